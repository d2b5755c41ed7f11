//! The far end of `make bench`, in an OS process of its own so that the VM
//! under test can spend its whole descriptor limit on server sockets.
//!
//! `bench_peer PORT COUNT UNREAD READ CLOSE` opens COUNT connections to
//! 127.0.0.1:PORT and sends UNREAD bytes on each (a request the server never
//! reads). READ is `now` (read from the start) or `on_go` (read only after a
//! `go` line on stdin); CLOSE is `on_eof` (close as soon as the server's FIN
//! arrives) or `on_release` (keep the connection open until a `release`
//! line). It prints `connected N` once all are connected, `fin_seen N ms=T`
//! once every connection has read the server's FIN (T from the start of
//! reading), and `ended clean=C reset=R other=O` once every connection has
//! ended: clean is FIN, reset is ECONNRESET.

use std::io::{BufRead, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsFd;
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use fin_close_nif::sys::{Epoll, Event};

#[derive(Clone, Copy, PartialEq)]
enum State {
    Open,
    FinSeen,
    Ended,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "bench_peer PORT COUNT UNREAD now|on_go on_eof|on_release";
    let [_, port, count, unread, read, close] = args.as_slice() else {
        panic!("{usage}");
    };
    let port: u16 = port.parse().expect(usage);
    let count: usize = count.parse().expect(usage);
    let unread = vec![b'q'; unread.parse().expect(usage)];
    let read_on_go = read == "on_go";
    let close_on_eof = close == "on_eof";
    let commands = stdin_lines();

    let mut conns: Vec<Option<TcpStream>> = Vec::with_capacity(count);
    for _ in 0..count {
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.write_all(&unread).expect("send");
        s.set_nonblocking(true).expect("nonblocking");
        conns.push(Some(s));
    }
    say(&format!("connected {count}"));

    if read_on_go {
        wait_for(&commands, "go");
    }
    let start = Instant::now();
    let epoll = Epoll::new().expect("epoll");
    for (i, s) in conns.iter().enumerate() {
        let events = (libc::EPOLLIN | libc::EPOLLRDHUP) as u32;
        epoll
            .add(s.as_ref().unwrap().as_fd(), events, i as u64)
            .expect("epoll add");
    }
    let mut state = vec![State::Open; count];
    let (mut fin_seen, mut clean, mut reset, mut other) = (0, 0, 0, 0);
    let mut buf = vec![0u8; 65536];
    let mut events: Vec<Event> = Vec::with_capacity(1024);
    while clean + reset + other < count {
        epoll
            .wait(&mut events, Some(Duration::from_millis(10)))
            .expect("epoll wait");
        for event in &events {
            let i = event.u64 as usize;
            let Some(s) = conns[i].as_mut() else { continue };
            let ending = loop {
                match s.read(&mut buf) {
                    Ok(0) => break Some(Ok(())),
                    Ok(_) => {}
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break None,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => break Some(Err(e)),
                }
            };
            match ending {
                None => {}
                Some(Ok(())) => {
                    if state[i] == State::Open {
                        state[i] = State::FinSeen;
                        fin_seen += 1;
                        if fin_seen == count {
                            say(&format!(
                                "fin_seen {count} ms={}",
                                start.elapsed().as_millis()
                            ));
                        }
                    }
                    if close_on_eof {
                        state[i] = State::Ended;
                        clean += 1;
                        conns[i] = None;
                    } else {
                        let _ = epoll.delete(s.as_fd());
                    }
                }
                Some(Err(e)) => {
                    state[i] = State::Ended;
                    if e.kind() == ErrorKind::ConnectionReset {
                        reset += 1;
                    } else {
                        other += 1;
                    }
                    conns[i] = None;
                }
            }
        }
        if !close_on_eof && fin_seen + reset + other == count {
            wait_for(&commands, "release");
            for (i, s) in conns.iter_mut().enumerate() {
                if s.take().is_some() && state[i] == State::FinSeen {
                    clean += 1;
                }
            }
        }
    }
    say(&format!("ended clean={clean} reset={reset} other={other}"));
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn stdin_lines() -> Receiver<String> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.send(line.trim().to_string()).is_err() {
                break;
            }
        }
    });
    rx
}

fn wait_for(commands: &Receiver<String>, word: &str) {
    loop {
        match commands.recv() {
            Ok(line) if line == word => return,
            Ok(_) => {}
            Err(_) => std::process::exit(0),
        }
    }
}
