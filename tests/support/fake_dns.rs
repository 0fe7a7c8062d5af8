//! A resolver of the tests' own, on loopback: weaveDNS forwards to it, so that no query a test
//! causes ever leaves the machine.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record, RecordType};

pub const UPSTREAM_NAME: &str = "upstream.test.";
pub const UPSTREAM_ADDR: Ipv4Addr = Ipv4Addr::new(10, 9, 9, 9);

/// A resolver of our own on 127.0.0.1 (UDP): `upstream.test` → 10.9.9.9, NXDOMAIN otherwise.
pub struct FakeUpstream {
    pub addr: SocketAddr,
    asked: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    tcp_thread: Option<std::thread::JoinHandle<()>>,
}

/// The fake resolver's reply to `query`, which it records.
fn fake_answer(query: &[u8], asked: &Mutex<Vec<String>>) -> Option<Vec<u8>> {
    let q = Message::from_vec(query).ok()?;
    let question = q.queries.first()?;
    let name = question.name().to_ascii().to_ascii_lowercase();
    asked.lock().unwrap().push(name.clone());
    let mut r = Message::response(q.metadata.id, q.metadata.op_code);
    r.metadata.recursion_desired = q.metadata.recursion_desired;
    r.metadata.recursion_available = true;
    r.queries = q.queries.clone();
    if name == UPSTREAM_NAME && question.query_type() == RecordType::A {
        r.add_answer(Record::from_rdata(
            question.name().clone(),
            60,
            RData::A(A(UPSTREAM_ADDR)),
        ));
    } else if name != UPSTREAM_NAME {
        r.metadata.response_code = ResponseCode::NXDomain;
    }
    r.to_vec().ok()
}

impl FakeUpstream {
    pub fn start() -> FakeUpstream {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let addr = sock.local_addr().unwrap();
        let asked = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (a, s) = (asked.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !s.load(Ordering::Relaxed) {
                let Ok((n, peer)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                if let Some(r) = fake_answer(&buf[..n], &a) {
                    let _ = sock.send_to(&r, peer);
                }
            }
        });
        // The same resolver over TCP, on the same port: weaveDNS relays TCP questions by TCP.
        let tcp = std::net::TcpListener::bind(addr).unwrap();
        tcp.set_nonblocking(true).unwrap();
        let (a, s) = (asked.clone(), stop.clone());
        let tcp_thread = std::thread::spawn(move || {
            use std::io::{Read, Write};
            while !s.load(Ordering::Relaxed) {
                let Ok((mut c, _)) = tcp.accept() else {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                };
                let _ = c.set_nonblocking(false);
                let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
                let mut len = [0u8; 2];
                if c.read_exact(&mut len).is_err() {
                    continue;
                }
                let mut q = vec![0u8; u16::from_be_bytes(len) as usize];
                if c.read_exact(&mut q).is_err() {
                    continue;
                }
                if let Some(r) = fake_answer(&q, &a) {
                    let mut out = (r.len() as u16).to_be_bytes().to_vec();
                    out.extend_from_slice(&r);
                    let _ = c.write_all(&out);
                }
            }
        });
        FakeUpstream {
            addr,
            asked,
            stop,
            thread: Some(thread),
            tcp_thread: Some(tcp_thread),
        }
    }

    pub fn asked(&self) -> Vec<String> {
        self.asked.lock().unwrap().clone()
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in [self.thread.take(), self.tcp_thread.take()]
            .into_iter()
            .flatten()
        {
            let _ = t.join();
        }
    }
}
