//! How big the cache may grow: `[cache] max-size` in the manifest, `EXPORTCTL_CACHE_MAX_SIZE`
//! in the environment (which wins), else [`DEFAULT_MAX_SIZE`].

/// The default limit: room for several versions of a BERT-base-sized project.
pub const DEFAULT_MAX_SIZE: u64 = 20 * 1000 * 1000 * 1000;

/// The environment variable that overrides the manifest.
pub const ENV: &str = "EXPORTCTL_CACHE_MAX_SIZE";

/// Parses `20GB`, `500 MB`, `1.5GiB`, `750k` or a plain number of bytes. Units are
/// case-insensitive; `KB`/`MB`/`GB`/`TB` are powers of 1000, `KiB`/`MiB`/`GiB`/`TiB` of 1024.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().map_err(|_| format!("`{text}` is not a size: expected a number and a unit, e.g. \"20GB\""))?;
    let unit = unit.trim().to_ascii_lowercase();
    let scale: f64 = match unit.as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "t" | "tb" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        other => return Err(format!("`{other}` is not a size unit: use B, KB, MB, GB, TB (or KiB, MiB, GiB, TiB)")),
    };
    let bytes = value * scale;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(format!("`{text}` is out of range"));
    }
    Ok(bytes.round() as u64)
}

/// A size as people read it: `1.5 GB`, `320 MB`, `12 KB`, `512 B`.
pub fn format_size(bytes: u64) -> String {
    let units = [("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3)];
    for (unit, scale) in units {
        if bytes as f64 >= scale {
            let value = bytes as f64 / scale;
            return if value >= 100.0 { format!("{value:.0} {unit}") } else { format!("{value:.1} {unit}") };
        }
    }
    format!("{bytes} B")
}

/// The limit in force: the environment's, else the manifest's, else the default.
pub fn resolve(manifest: Option<u64>) -> Result<u64, String> {
    match std::env::var(ENV) {
        Ok(text) if !text.trim().is_empty() => parse_size(&text).map_err(|e| format!("{ENV}: {e}")),
        _ => Ok(manifest.unwrap_or(DEFAULT_MAX_SIZE)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_read_as_people_write_them() {
        assert_eq!(parse_size("20GB"), Ok(20_000_000_000));
        assert_eq!(parse_size("500 MB"), Ok(500_000_000));
        assert_eq!(parse_size("1.5GiB"), Ok(1_610_612_736));
        assert_eq!(parse_size("750k"), Ok(750_000));
        assert_eq!(parse_size("1024"), Ok(1024));
        assert!(parse_size("lots").unwrap_err().contains("not a size"));
        assert!(parse_size("3 parsecs").unwrap_err().contains("not a size unit"));
        assert_eq!(format_size(1_500_000_000), "1.5 GB");
        assert_eq!(format_size(320_000_000), "320 MB");
        assert_eq!(format_size(512), "512 B");
    }
}
