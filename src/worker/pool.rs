//! App threads for `--threads N > 1`: each takes a connection with a parsed
//! head from the I/O thread, serves it (and any pipelined requests behind
//! it) and hands the connection back for the next keep-alive wait, or for
//! the I/O thread to write the rest of a response to a slow client.
//!
//! Invariant: every job produces exactly one `Returned` message, so the I/O
//! thread's count of busy threads stays exact; each message is followed by
//! a wake-up of the I/O thread's epoll through an eventfd.

use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};
use nix::sys::eventfd::EventFd;

use super::conn::{Conn, Next, ServeCtx, serve};
use crate::http::Head;
use crate::wsgi::App;

/// A connection whose head is parsed and whose request is due.
#[derive(Debug)]
pub(crate) struct Job {
    pub conn: Conn,
    pub head: Head,
}

/// What an app thread hands back when a job is done.
#[derive(Debug)]
pub(crate) enum Returned {
    /// Kept open: wait for its next request, or write the rest of a
    /// response (`Conn::writing`).
    Open(Conn),
    /// Closed.
    Closed,
}

/// The app threads and their channels.
#[derive(Debug)]
pub(crate) struct Pool {
    jobs: Option<Sender<Job>>,
    pub returns: Receiver<Returned>,
    pub wake: Arc<EventFd>,
    threads: Vec<JoinHandle<()>>,
}

impl Pool {
    /// Start `n` app threads serving with `ctx`.
    pub fn start(n: usize, ctx: Arc<ServeCtx>) -> std::io::Result<Pool> {
        let (jobs, job_rx) = crossbeam_channel::unbounded::<Job>();
        let (ret_tx, returns) = crossbeam_channel::unbounded();
        let wake = Arc::new(EventFd::from_flags(
            nix::sys::eventfd::EfdFlags::EFD_CLOEXEC | nix::sys::eventfd::EfdFlags::EFD_NONBLOCK,
        )?);
        let threads = (0..n)
            .map(|i| {
                let (job_rx, ret_tx, wake, ctx) = (
                    job_rx.clone(),
                    ret_tx.clone(),
                    Arc::clone(&wake),
                    Arc::clone(&ctx),
                );
                std::thread::Builder::new()
                    .name(format!("app-{i}"))
                    .spawn(move || {
                        App::with_thread_state(|| app_thread(&ctx, i, &job_rx, &ret_tx, &wake))
                    })
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(Pool {
            jobs: Some(jobs),
            returns,
            wake,
            threads,
        })
    }

    /// Queue a job for the next free app thread.
    pub fn submit(&self, job: Job) {
        if let Some(jobs) = &self.jobs {
            let _ = jobs.send(job);
        }
    }

    /// Let the threads finish their jobs and end; wait for them.
    pub fn join(mut self) {
        self.jobs = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn app_thread(
    ctx: &ServeCtx,
    index: usize,
    jobs: &Receiver<Job>,
    done: &Sender<Returned>,
    wake: &EventFd,
) {
    let thread = ctx.slot.thread(index);
    for Job { mut conn, head } in jobs {
        let returned = match serve(ctx, thread, &mut conn, head) {
            Next::Read | Next::Write | Next::Linger => Returned::Open(conn),
            Next::Close => Returned::Closed,
        };
        let _ = done.send(returned);
        let _ = wake.write(1);
    }
}
