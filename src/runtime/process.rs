//! Child processes that never outlive exportctl.
//!
//! A worker or installer left running after exportctl is killed (`kill -9`, an OOM kill, a CI
//! timeout) would go on writing into folders the next build cleans, and holding gigabytes of
//! memory. On Linux the kernel's parent-death signal kills them the instant exportctl goes
//! away. The signal fires when the *thread* that started the child ends, not the process, so
//! children that outlive one build (the warm worker under `--watch`) are started from a
//! thread that lives as long as the process ([`spawn_bound`]). Elsewhere the worker's own
//! watchdog (it polls its parent's pid) is the fallback.

use std::io;
use std::process::{Child, Command};
use std::sync::mpsc::{self, Sender};
use std::sync::{Mutex, OnceLock};

/// Makes `command`'s process die with this process (Linux; a no-op elsewhere).
pub fn die_with_parent(command: &mut Command) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt as _;
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: prctl, getppid and _exit are async-signal-safe; the closure touches nothing else.
        unsafe {
            command.pre_exec(move || {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
                // exportctl may have died between fork and prctl: then nobody would kill us.
                if libc::getppid() != parent {
                    libc::_exit(70);
                }
                Ok(())
            });
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = command;
}

type Request = (Command, Sender<io::Result<Child>>);

/// Spawns `command` (with [`die_with_parent`]) from a thread that lives as long as the process.
pub fn spawn_bound(mut command: Command) -> io::Result<Child> {
    static SPAWNER: OnceLock<Mutex<Sender<Request>>> = OnceLock::new();
    die_with_parent(&mut command);
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("exportctl-spawner".into())
            .spawn(move || {
                for (mut command, reply) in rx {
                    let _ = reply.send(command.spawn());
                }
            })
            .expect("a thread can be started");
        Mutex::new(tx)
    });
    let (reply, answer) = mpsc::channel();
    spawner.lock().unwrap_or_else(|p| p.into_inner()).send((command, reply)).map_err(|_| io::Error::other("the spawner thread is gone"))?;
    answer.recv().map_err(|_| io::Error::other("the spawner thread is gone"))?
}
