//! A thread for CPU work that no request waits on (the funnel
//! aggregator's parsing and folding), at a lower scheduling priority than
//! the request threads. On the async runtime that work would hold a
//! worker for milliseconds at a time, and the requests queued behind it
//! (the one in its LIFO slot cannot be stolen) would wait that long; at
//! a lower priority the kernel also gives it only what the requests leave
//! while they keep the machine busy, and the rest once they stop.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::mpsc;

type Job = Box<dyn FnOnce() + Send>;

/// How much lower than the request threads (a nice value, 0 to 19). At 10
/// the lane gets about a tenth of a core's share against a busy request
/// thread: enough to keep up with what requests leave for it, little
/// enough not to show in their throughput.
const NICE: i32 = 10;

pub struct Lane {
    jobs: Option<mpsc::Sender<Job>>,
}

impl Lane {
    /// Starts the lane's thread; its work runs on the caller's thread
    /// instead when no thread could be started.
    pub fn spawn(name: &str) -> Lane {
        let (tx, rx) = mpsc::channel::<Job>();
        let started = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                lower_priority();
                // Ends once the lane is dropped.
                for job in rx {
                    job();
                }
            });
        match started {
            Ok(_) => Lane { jobs: Some(tx) },
            Err(e) => {
                tracing::warn!(error = %e, lane = name, "no thread for background work; it runs beside requests");
                Lane { jobs: None }
            }
        }
    }

    /// Runs `f` on the lane and waits for it. A panic in `f` resumes in
    /// the caller, as if `f` had run there.
    pub async fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let Some(jobs) = &self.jobs else {
            return f();
        };
        let (tx, rx) = tokio::sync::oneshot::channel::<Result<T, Box<dyn Any + Send>>>();
        let job: Job = Box::new(move || {
            let _ = tx.send(catch_unwind(AssertUnwindSafe(f)));
        });
        if let Err(mpsc::SendError(job)) = jobs.send(job) {
            job();
        }
        match rx.await {
            Ok(Ok(v)) => v,
            Ok(Err(panic)) => resume_unwind(panic),
            // The thread lives as long as `jobs` and catches what a job
            // panics with, so every job it takes answers.
            Err(_) => unreachable!("a job of the lane was dropped unanswered"),
        }
    }
}

#[cfg(target_os = "linux")]
fn lower_priority() {
    // On Linux the nice value is per thread: PRIO_PROCESS with a thread id
    // sets that thread's alone.
    // SAFETY: plain system calls on this thread's own id; no memory is
    // shared with the kernel.
    let r = unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, NICE)
    };
    if r != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "background work runs at the requests' priority");
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_off_the_runtime_at_a_lower_priority() {
        let lane = Lane::spawn("lane-test");
        let here = std::thread::current().id();
        let (there, name) = lane
            .run(|| {
                let t = std::thread::current();
                (t.id(), t.name().map(str::to_owned))
            })
            .await;
        assert_ne!(there, here);
        assert_eq!(name.as_deref(), Some("lane-test"));
        #[cfg(target_os = "linux")]
        {
            // SAFETY: reads this thread's own nice value.
            let nice = lane
                .run(|| unsafe {
                    *libc::__errno_location() = 0;
                    libc::getpriority(
                        libc::PRIO_PROCESS,
                        libc::syscall(libc::SYS_gettid) as libc::id_t,
                    )
                })
                .await;
            assert_eq!(nice, NICE);
        }
    }

    #[tokio::test]
    async fn a_panic_resumes_in_the_caller_and_the_lane_goes_on() {
        let lane = std::sync::Arc::new(Lane::spawn("lane-test"));
        let l = lane.clone();
        let failed =
            tokio::spawn(async move { l.run(|| -> u8 { panic!("on purpose") }).await }).await;
        assert!(failed.unwrap_err().is_panic());
        assert_eq!(lane.run(|| 6 * 7).await, 42);
    }
}
