//! The shared remote cache: what one machine built, every other machine downloads.
//!
//! The protocol is Bazel's HTTP cache, so that the servers teams already run work unchanged
//! (nginx with WebDAV, bazel-remote, most object stores behind a proxy):
//!
//! ```text
//! GET/PUT <base>/ac/<key>       an entry: the step's outputs (names, digests, sizes), its
//!                               summary, warnings and full key — JSON, optionally signed
//! GET/PUT <base>/cas/<sha256>   one output file, named by its SHA-256 (bazel-remote checks it)
//! ```
//!
//! A build looks in its local cache first, then here, then runs the step; a step it ran is
//! uploaded in the background, blobs first and the `ac` entry last, so that a reader never
//! finds an entry whose blobs are missing.
//!
//! **Nothing from the wire is trusted.** Every blob is hashed (SHA-256 and BLAKE3) while it
//! streams to a temporary file and kept only if both digests and the size are the entry's; an
//! entry must carry a valid HMAC-SHA256 when `EXPORTCTL_REMOTE_CACHE_KEY` is set (as
//! Turborepo's signed cache does), so a writable cache cannot be poisoned into shipping a model
//! nobody built. A refused connection, a timeout, a 5xx or a short body is a miss: the step
//! runs locally, and the build says so once, not once per step. A server that cannot be reached
//! is not asked again during the build.
//!
//! The bearer token (`EXPORTCTL_REMOTE_CACHE_TOKEN`) is sent in a header only: never printed,
//! never in an event or a log; URLs are shown without their user part.

use std::collections::{BTreeMap, HashSet};
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::store::{Entry, Store};
use super::verify::Verifier;
use crate::contract::Lint;
use crate::exec::Warning;
use crate::manifest::CacheSettings;

pub const ENV_URL: &str = "EXPORTCTL_REMOTE_CACHE";
pub const ENV_TOKEN: &str = "EXPORTCTL_REMOTE_CACHE_TOKEN";
pub const ENV_KEY: &str = "EXPORTCTL_REMOTE_CACHE_KEY";
pub const ENV_UPLOAD: &str = "EXPORTCTL_REMOTE_UPLOAD";
pub const ENV_TIMEOUT: &str = "EXPORTCTL_REMOTE_CACHE_TIMEOUT";

/// Where the remote cache is and how to talk to it.
#[derive(Clone)]
pub struct RemoteConfig {
    /// The base URL, without a trailing slash.
    pub url: String,
    /// The `Authorization` header's value: `Bearer <token>`, or `Basic …` from the URL's
    /// `user:password@` (bazel-remote's htpasswd); never shown.
    authorization: Option<String>,
    /// Upload what this build runs.
    pub upload: bool,
    key: Option<Vec<u8>>,
    /// How long a request may wait for the server; a body may take this plus one second per
    /// 10 MB.
    pub timeout: Duration,
}

impl std::fmt::Debug for RemoteConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteConfig")
            .field("url", &self.display_url())
            .field("authorization", &self.authorization.as_ref().map(|_| "(set)"))
            .field("signed", &self.key.is_some())
            .field("upload", &self.upload)
            .finish()
    }
}

impl RemoteConfig {
    /// The remote cache in force: the environment's, else the manifest's; `None` without one.
    pub fn resolve(settings: &CacheSettings) -> Result<Option<RemoteConfig>, String> {
        let from_env = std::env::var(ENV_URL).ok().filter(|v| !v.trim().is_empty());
        let Some(url) = from_env.or_else(|| settings.remote.clone()) else { return Ok(None) };
        let url = url.trim().trim_end_matches('/').to_string();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!("{ENV_URL}: `{}` is not an http(s) URL", redact(&url)));
        }
        let basic = user_part(&url).map(|user| {
            use base64::Engine;
            let decoded = percent_encoding::percent_decode_str(user).decode_utf8_lossy();
            format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(decoded.as_bytes()))
        });
        let url = redact(&url);
        let upload = match std::env::var(ENV_UPLOAD) {
            Ok(v) if !v.trim().is_empty() => !matches!(v.trim().to_ascii_lowercase().as_str(), "0" | "false" | "no" | "off"),
            _ => settings.remote_upload,
        };
        let timeout = match std::env::var(ENV_TIMEOUT) {
            Ok(v) if !v.trim().is_empty() => {
                Duration::from_secs_f64(v.trim().parse::<f64>().map_err(|_| format!("{ENV_TIMEOUT}: `{v}` is not a number of seconds"))?)
            }
            _ => Duration::from_secs(30),
        };
        Ok(Some(RemoteConfig {
            url,
            authorization: std::env::var(ENV_TOKEN).ok().filter(|v| !v.is_empty()).map(|token| format!("Bearer {token}")).or(basic),
            upload,
            key: std::env::var(ENV_KEY).ok().filter(|v| !v.is_empty()).map(String::into_bytes),
            timeout,
        }))
    }

    /// The URL as it may be shown: no user or password.
    pub fn display_url(&self) -> String {
        redact(&self.url)
    }
}

/// `http://user:secret@host/x` → `user:secret`.
fn user_part(url: &str) -> Option<&str> {
    let (_, rest) = url.split_once("://")?;
    let authority = rest.split('/').next()?;
    authority.rsplit_once('@').map(|(user, _)| user)
}

/// `http://user:secret@host/x` → `http://host/x`.
fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            if path.is_empty() {
                format!("{scheme}://{host}")
            } else {
                format!("{scheme}://{host}/{path}")
            }
        }
        None => url.to_string(),
    }
}

/// One output file as the remote entry records it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Blob {
    sha256: String,
    size: u64,
}

/// What `ac/<key>` holds: the entry and, per file, its SHA-256 and size.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RemoteEntry {
    format: u32,
    entry: Entry,
    blobs: BTreeMap<String, Blob>,
}

/// The bytes stored at `ac/<key>`: the entry as a JSON string, and its signature.
#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    format: u32,
    entry: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hmac: Option<String>,
}

const FORMAT: u32 = 1;

/// Why a remote lookup gave nothing (each is a miss; the kinds decide what is said).
#[derive(Debug)]
enum Failure {
    /// The server does not have it: silent.
    Absent,
    /// The server cannot be reached or timed out: said once, and not asked again.
    Unreachable(String),
    /// The server answered with an error: said once.
    Server(String),
    /// What came back is not what the entry says, or is not signed: said for each.
    Untrusted(String),
}

/// What the remote cache did during a build, for the summary.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RemoteStats {
    /// Entries downloaded.
    pub hits: u64,
    /// Bytes of files downloaded.
    pub downloaded: u64,
    /// Entries uploaded.
    pub uploaded_entries: u64,
    /// Bytes of files uploaded (those the server already had are not sent).
    pub uploaded: u64,
}

/// The remote cache of one build.
pub struct Remote {
    config: RemoteConfig,
    agent: ureq::Agent,
    verifier: Arc<Verifier>,
    unreachable: AtomicBool,
    said: Mutex<HashSet<Lint>>,
    /// Warnings for the user, not yet reported.
    warnings: Mutex<Vec<Warning>>,
    uploads: Mutex<Vec<std::thread::JoinHandle<()>>>,
    /// SHA-256s whose download did not check: uploaded again even though the server has them,
    /// so that a damaged blob is replaced by the next build that makes it.
    damaged: Mutex<HashSet<String>>,
    hits: AtomicU64,
    downloaded: AtomicU64,
    uploaded_entries: AtomicU64,
    uploaded: AtomicU64,
}

type HmacSha256 = Hmac<Sha256>;

impl Remote {
    /// The remote cache for a build whose local cache checks bytes with `verifier`.
    pub fn new(config: RemoteConfig, verifier: Arc<Verifier>) -> Remote {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(config.timeout.min(Duration::from_secs(10))))
            .timeout_per_read(Some(config.timeout))
            .timeout_per_write(Some(config.timeout));
        #[cfg(target_os = "macos")]
        let agent = agent.tls_config(ureq::tls::TlsConfig::builder().provider(ureq::tls::TlsProvider::NativeTls).build());
        let agent: ureq::Agent = agent.build().into();
        Remote {
            config,
            agent,
            verifier,
            unreachable: AtomicBool::new(false),
            said: Mutex::new(HashSet::new()),
            warnings: Mutex::new(Vec::new()),
            uploads: Mutex::new(Vec::new()),
            damaged: Mutex::new(HashSet::new()),
            hits: AtomicU64::new(0),
            downloaded: AtomicU64::new(0),
            uploaded_entries: AtomicU64::new(0),
            uploaded: AtomicU64::new(0),
        }
    }

    pub fn config(&self) -> &RemoteConfig {
        &self.config
    }

    /// Takes the warnings raised since the last call (the build reports them).
    pub fn take_warnings(&self) -> Vec<Warning> {
        std::mem::take(&mut *self.warnings.lock().unwrap_or_else(|p| p.into_inner()))
    }

    pub fn stats(&self) -> RemoteStats {
        RemoteStats {
            hits: self.hits.load(Ordering::Relaxed),
            downloaded: self.downloaded.load(Ordering::Relaxed),
            uploaded_entries: self.uploaded_entries.load(Ordering::Relaxed),
            uploaded: self.uploaded.load(Ordering::Relaxed),
        }
    }

    /// Raises a warning; those with `once` set are raised once per build whatever their
    /// message (a server that is down would otherwise say so for every step).
    fn say(&self, code: Lint, once: bool, message: String, help: &str) {
        if once && !self.said.lock().unwrap_or_else(|p| p.into_inner()).insert(code) {
            return;
        }
        let warning = Warning { code, message, help: Some(help.to_string()) };
        self.warnings.lock().unwrap_or_else(|p| p.into_inner()).push(warning);
    }

    fn fail(&self, failure: Failure) {
        let url = self.config.display_url();
        match failure {
            Failure::Absent => {}
            Failure::Unreachable(why) => {
                // Once said, never asked again during this build: the first refusal or timeout
                // is the only one the build waits for.
                if !self.unreachable.swap(true, Ordering::SeqCst) {
                    self.say(
                        Lint::RemoteCacheUnreachable,
                        true,
                        format!("the remote cache {url} cannot be reached ({why}): this build uses the local cache only and runs what it lacks"),
                        &format!("check that the server runs and that {ENV_URL} or `[cache] remote` names it; {ENV_TIMEOUT} sets how long to wait (seconds, default 30)"),
                    );
                }
            }
            Failure::Server(why) => self.say(
                Lint::RemoteCacheError,
                true,
                format!("the remote cache {url} answered with an error ({why}): what it could not give is built locally"),
                "the server's own log says why; a 401 or 403 means the token (EXPORTCTL_REMOTE_CACHE_TOKEN) is missing or wrong; a 400 storing an entry from bazel-remote means it checks entries as Bazel action results: start it with --disable_http_ac_validation",
            ),
            Failure::Untrusted(why) => self.say(
                Lint::RemoteCacheUntrusted,
                false,
                format!("the remote cache {url} sent {why}: ignored, the step runs locally"),
                "nothing from it was kept; if this repeats, the server's storage is damaged or someone writes into it",
            ),
        }
    }

    fn request(&self, method: &str, path: &str) -> ureq::RequestBuilder<ureq::typestate::WithoutBody> {
        let url = format!("{}/{path}", self.config.url);
        let mut request = match method {
            "GET" => self.agent.get(&url),
            "HEAD" => self.agent.head(&url),
            _ => unreachable!("GET or HEAD"),
        };
        if let Some(authorization) = &self.config.authorization {
            request = request.header("Authorization", authorization);
        }
        request
    }

    fn put(&self, path: &str) -> ureq::RequestBuilder<ureq::typestate::WithBody> {
        let mut request = self.agent.put(format!("{}/{path}", self.config.url));
        if let Some(authorization) = &self.config.authorization {
            request = request.header("Authorization", authorization);
        }
        request
    }

    fn classify(error: ureq::Error) -> Failure {
        match error {
            ureq::Error::Timeout(_) => Failure::Unreachable("timed out".into()),
            ureq::Error::Io(e) => Failure::Unreachable(e.kind().to_string()),
            ureq::Error::ConnectionFailed | ureq::Error::HostNotFound => Failure::Unreachable("connection refused".into()),
            other => Failure::Server(other.to_string()),
        }
    }

    /// The entry of `key`, downloaded into `store` with every blob it lacks; `None` when the
    /// remote cache does not have it, cannot be reached, or sent something that does not check.
    /// `progress` hears of the bytes downloaded so far and in all.
    pub fn fetch(&self, key: &str, store: &Store, progress: &(dyn Fn(u64, u64) + Sync)) -> Option<Entry> {
        if self.unreachable.load(Ordering::SeqCst) {
            return None;
        }
        match self.try_fetch(key, store, &self.verifier, progress) {
            Ok(entry) => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                Some(entry)
            }
            Err(failure) => {
                self.fail(failure);
                None
            }
        }
    }

    fn try_fetch(&self, key: &str, store: &Store, verifier: &Verifier, progress: &(dyn Fn(u64, u64) + Sync)) -> Result<Entry, Failure> {
        let mut response = self
            .request("GET", &format!("ac/{key}"))
            .config()
            .timeout_global(Some(self.config.timeout))
            .build()
            .call()
            .map_err(Self::classify)?;
        match response.status().as_u16() {
            200 => {}
            404 => return Err(Failure::Absent),
            status => return Err(Failure::Server(format!("HTTP {status} for an entry"))),
        }
        let body = response
            .body_mut()
            .with_config()
            .limit(16 << 20)
            .read_to_vec()
            .map_err(|e| Failure::Unreachable(format!("the entry's body: {e}")))?;
        let remote = self.open(key, &body)?;
        let entry = remote.entry;
        if entry.key != key
            || !entry.names_only_its_own_files()
            || Entry::digest_of(&entry.files) != entry.digest
            || remote.blobs.keys().ne(entry.files.keys())
        {
            return Err(Failure::Untrusted(format!("an entry for {} that does not describe itself consistently", short(key))));
        }
        // The blobs this cache lacks, downloaded in parallel (a few at a time).
        let missing: Vec<(&String, &String, &Blob)> = entry
            .files
            .iter()
            .filter(|(_, digest)| verifier.check(&store.blob_path(digest), digest).is_err())
            .map(|(file, digest)| (file, digest, &remote.blobs[file]))
            .collect();
        let failures: Mutex<Vec<Failure>> = Mutex::new(Vec::new());
        let next = std::sync::atomic::AtomicUsize::new(0);
        let total: u64 = missing.iter().map(|(_, _, blob)| blob.size).sum();
        let done = AtomicU64::new(0);
        let advance = |n: u64| progress(done.fetch_add(n, Ordering::Relaxed) + n, total);
        std::thread::scope(|scope| {
            for _ in 0..missing.len().min(4) {
                scope.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some((file, digest, blob)) = missing.get(i) else { break };
                    if let Err(failure) = self.download(file, digest, blob, store, verifier, &advance) {
                        failures.lock().unwrap_or_else(|p| p.into_inner()).push(failure);
                        break;
                    }
                });
            }
        });
        if let Some(failure) = failures.into_inner().unwrap_or_else(|p| p.into_inner()).into_iter().next() {
            return Err(failure);
        }
        store.insert(entry).map_err(|e| Failure::Server(format!("the entry could not be stored locally: {e}")))
    }

    /// Checks the envelope's signature (when a key is set) and reads the entry.
    fn open(&self, key: &str, body: &[u8]) -> Result<RemoteEntry, Failure> {
        let envelope: Envelope =
            serde_json::from_slice(body).map_err(|_| Failure::Untrusted(format!("an entry for {} that is not exportctl's", short(key))))?;
        if let Some(secret) = &self.config.key {
            let valid = envelope.hmac.as_deref().is_some_and(|hmac| sign(secret, key, &envelope.entry) == hmac);
            if !valid {
                return Err(Failure::Untrusted(format!("an entry for {} without a valid signature ({ENV_KEY} is set)", short(key))));
            }
        }
        serde_json::from_str(&envelope.entry)
            .map_err(|_| Failure::Untrusted(format!("an entry for {} that is not exportctl's", short(key))))
    }

    /// Streams `cas/<sha256>` to a temporary file, hashing it; adopts it as the blob of
    /// `digest` only if its size and both digests are the entry's.
    fn download(
        &self,
        file: &str,
        digest: &str,
        blob: &Blob,
        store: &Store,
        verifier: &Verifier,
        advance: &dyn Fn(u64),
    ) -> Result<(), Failure> {
        let mut response = self
            .request("GET", &format!("cas/{}", blob.sha256))
            .config()
            .timeout_recv_body(Some(self.config.timeout + Duration::from_secs(blob.size / 10_000_000)))
            .build()
            .call()
            .map_err(Self::classify)?;
        match response.status().as_u16() {
            200 => {}
            404 => return Err(Failure::Untrusted(format!("an entry whose file {file} (sha256 {}) it does not have", short(&blob.sha256)))),
            status => return Err(Failure::Server(format!("HTTP {status} for a file"))),
        }
        // What the server says it sends: fewer bytes than that is a broken transfer, not a
        // damaged file.
        let announced: Option<u64> = response.headers().get("content-length").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
        let scratch = store.scratch().map_err(|e| Failure::Server(format!("no scratch space: {e}")))?;
        let path = scratch.path().join("blob");
        let mut out = std::fs::File::create(&path).map_err(|e| Failure::Server(format!("no scratch space: {e}")))?;
        let mut reader = response.body_mut().as_reader();
        let (mut sha, mut b3, mut size) = (Sha256::new(), blake3::Hasher::new(), 0u64);
        let mut buffer = vec![0u8; 1 << 20];
        loop {
            let n = match reader.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e)
                    if e.kind() == io::ErrorKind::TimedOut
                        || matches!(e.get_ref().and_then(|inner| inner.downcast_ref::<ureq::Error>()), Some(ureq::Error::Timeout(_))) =>
                {
                    return Err(Failure::Unreachable("timed out".into()))
                }
                Err(e) => return Err(Failure::Unreachable(format!("the connection broke during a download: {e}"))),
            };
            size += n as u64;
            if size > blob.size {
                return Err(Failure::Untrusted(format!("more bytes than the entry records for sha256 {}", short(&blob.sha256))));
            }
            sha.update(&buffer[..n]);
            b3.update(&buffer[..n]);
            out.write_all(&buffer[..n]).map_err(|e| Failure::Server(format!("cannot write a download: {e}")))?;
            advance(n as u64);
        }
        drop(out);
        let (sha, b3) = (hex(&sha.finalize()), b3.finalize().to_hex().to_string());
        if announced.is_some_and(|announced| size < announced) {
            return Err(Failure::Unreachable("the connection broke during a download".into()));
        }
        if size != blob.size || sha != blob.sha256 || b3 != digest {
            self.damaged.lock().unwrap_or_else(|p| p.into_inner()).insert(blob.sha256.clone());
        }
        if size != blob.size {
            return Err(Failure::Untrusted(format!("a truncated file for sha256 {} ({size} of {} bytes)", short(&blob.sha256), blob.size)));
        }
        if sha != blob.sha256 || b3 != digest {
            return Err(Failure::Untrusted(format!("a file whose bytes do not match its digest sha256 {}", blob.sha256)));
        }
        store.adopt_blob(&path, digest, verifier).map_err(|e| Failure::Server(format!("cannot keep a download: {e}")))?;
        self.downloaded.fetch_add(size, Ordering::Relaxed);
        Ok(())
    }

    /// Uploads `entry` in the background: every blob the server lacks, then the entry. Call
    /// [`Remote::finish_uploads`] before the build ends.
    pub fn upload(self: &Arc<Self>, entry: Entry) {
        if !self.config.upload || self.unreachable.load(Ordering::SeqCst) {
            return;
        }
        let remote = Arc::clone(self);
        let handle = std::thread::spawn(move || {
            if let Err(failure) = remote.try_upload(&entry, &remote.verifier) {
                remote.fail(failure);
            }
        });
        self.uploads.lock().unwrap_or_else(|p| p.into_inner()).push(handle);
    }

    fn try_upload(&self, entry: &Entry, verifier: &Verifier) -> Result<(), Failure> {
        let out = entry.out();
        let mut blobs = BTreeMap::new();
        for (file, digest) in &entry.files {
            let path = out.join(file);
            // What reaches the remote cache is what the entry records.
            verifier
                .check(&path, digest)
                .map_err(|problem| Failure::Untrusted(format!("(no: the local file {file} {problem}) nothing")))?;
            let (sha256, size) = sha256_file(&path).map_err(|e| Failure::Server(format!("cannot read {file}: {e}")))?;
            let head = self.request("HEAD", &format!("cas/{sha256}")).call().map_err(Self::classify)?;
            let damaged = self.damaged.lock().unwrap_or_else(|p| p.into_inner()).contains(&sha256);
            if damaged || head.status().as_u16() != 200 {
                let file = std::fs::File::open(&path).map_err(|e| Failure::Server(format!("cannot read {file:?}: {e}")))?;
                let response = self.put(&format!("cas/{sha256}")).send(&file).map_err(Self::classify)?;
                if !response.status().is_success() {
                    return Err(Failure::Server(format!("HTTP {} storing a file", response.status().as_u16())));
                }
                self.uploaded.fetch_add(size, Ordering::Relaxed);
            }
            blobs.insert(file.clone(), Blob { sha256, size });
        }
        let remote = RemoteEntry { format: FORMAT, entry: entry.clone(), blobs };
        let text = serde_json::to_string(&remote).expect("entries serialise");
        let hmac = self.config.key.as_ref().map(|secret| sign(secret, &entry.key, &text));
        let envelope = serde_json::to_vec(&Envelope { format: FORMAT, entry: text, hmac }).expect("envelopes serialise");
        let response = self.put(&format!("ac/{}", entry.key)).send(&envelope[..]).map_err(Self::classify)?;
        if !response.status().is_success() {
            return Err(Failure::Server(format!("HTTP {} storing an entry", response.status().as_u16())));
        }
        self.uploaded_entries.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Waits for the uploads started during the build.
    pub fn finish_uploads(&self) {
        let handles = std::mem::take(&mut *self.uploads.lock().unwrap_or_else(|p| p.into_inner()));
        for handle in handles {
            let _ = handle.join();
        }
    }
}

/// HMAC-SHA256 of the key and the entry's text, hex.
fn sign(secret: &[u8], key: &str, entry: &str) -> String {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any size");
    mac.update(key.as_bytes());
    mac.update(b"\0");
    mac.update(entry.as_bytes());
    hex(&mac.finalize().into_bytes())
}

fn sha256_file(path: &Path) -> io::Result<(String, u64)> {
    let mut file = std::fs::File::open(path)?;
    let mut sha = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        sha.update(&buffer[..n]);
        size += n as u64;
    }
    Ok((hex(&sha.finalize()), size))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn short(digest: &str) -> &str {
    &digest[..digest.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_shown_without_their_secrets() {
        assert_eq!(redact("http://user:s3cret@cache:8080/exportctl"), "http://cache:8080/exportctl");
        assert_eq!(redact("https://cache.internal"), "https://cache.internal");
    }

    #[test]
    fn a_user_and_password_in_the_url_become_basic_auth_and_leave_the_url() {
        assert_eq!(user_part("https://ci:p%40ss@cache:8080/exportctl"), Some("ci:p%40ss"));
        assert_eq!(user_part("https://cache:8080/a@b"), None, "an @ in the path is not a user part");
        // Built by hand, as `resolve` reads the environment.
        let settings = CacheSettings { remote: Some("https://ci:p%40ss@cache:8080/exportctl/".into()), ..CacheSettings::default() };
        if std::env::var_os(ENV_URL).is_none() && std::env::var_os(ENV_TOKEN).is_none() {
            let config = RemoteConfig::resolve(&settings).unwrap().unwrap();
            assert_eq!(config.url, "https://cache:8080/exportctl");
            // base64("ci:p@ss")
            assert_eq!(config.authorization.as_deref(), Some("Basic Y2k6cEBzcw=="));
            assert!(!format!("{config:?}").contains("Y2k6"));
        }
    }

    #[test]
    fn a_signature_covers_the_key_and_the_entry() {
        let a = sign(b"secret", "k1", "{\"x\":1}");
        assert_eq!(a, sign(b"secret", "k1", "{\"x\":1}"));
        assert_ne!(a, sign(b"secret", "k2", "{\"x\":1}"));
        assert_ne!(a, sign(b"secret", "k1", "{\"x\":2}"));
        assert_ne!(a, sign(b"other", "k1", "{\"x\":1}"));
    }
}
