//! The DNS side of weaveDNS: UDP and TCP listeners, each query answered from the records or
//! relayed to the upstream resolvers. Messages are parsed and built by hickory-proto.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::Name;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

use super::records::{Answer, Records, answer};

/// How long one upstream gets before the next one is tried.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
/// A TCP client that says nothing for this long is dropped.
const TCP_IDLE: Duration = Duration::from_secs(10);
/// Without EDNS a UDP answer may not exceed this (RFC 1035).
const UDP_PLAIN_MAX: usize = 512;
/// What we accept and send over UDP with EDNS, whatever the client offers.
const UDP_EDNS_MAX: usize = 4096;

enum Step {
    Reply(Option<Vec<u8>>),
    Forward(Message),
}

pub struct Resolver {
    pub domain: Name,
    pub records: Arc<RwLock<Records>>,
    pub upstream: Vec<SocketAddr>,
}

impl Resolver {
    fn local(&self, query: &Message) -> Answer {
        let records = self.records.read().unwrap_or_else(|p| p.into_inner());
        answer(&records, &self.domain, query)
    }

    /// The reply to one query as it arrived; `None` when there is nothing to say (garbage).
    async fn resolve(&self, bytes: &[u8], tcp: bool) -> Option<Vec<u8>> {
        match self.step(bytes, tcp) {
            Step::Reply(r) => r,
            Step::Forward(query) => self.forward_or_fail(bytes, &query, tcp).await,
        }
    }

    /// What the records say, without waiting for anything.
    fn step(&self, bytes: &[u8], tcp: bool) -> Step {
        let query = match Message::from_vec(bytes) {
            Ok(q) => q,
            Err(_) => {
                // A header we can read gets FORMERR; anything shorter is dropped.
                let (Some(a), Some(b)) = (bytes.first(), bytes.get(1)) else {
                    return Step::Reply(None);
                };
                let mut m = Message::response(
                    u16::from_be_bytes([*a, *b]),
                    hickory_proto::op::OpCode::Query,
                );
                m.metadata.response_code = ResponseCode::FormErr;
                return Step::Reply(m.to_vec().ok());
            }
        };
        let Answer::Local(mut reply) = self.local(&query) else {
            return Step::Forward(query);
        };
        if query.edns.is_some() {
            let mut edns = hickory_proto::op::Edns::new();
            edns.set_max_payload(UDP_EDNS_MAX as u16);
            reply.set_edns(edns);
        }
        let Ok(bytes) = reply.to_vec() else {
            return Step::Reply(None);
        };
        if !tcp && bytes.len() > udp_limit(&query) {
            // Too big for this client over UDP: it retries over TCP.
            return Step::Reply(reply.truncate().to_vec().ok());
        }
        Step::Reply(Some(bytes))
    }

    async fn forward_or_fail(&self, bytes: &[u8], query: &Message, tcp: bool) -> Option<Vec<u8>> {
        if let Some(r) = self.forward(bytes, tcp).await {
            return Some(r);
        }
        let mut m = Message::response(query.metadata.id, query.metadata.op_code);
        m.metadata.response_code = ResponseCode::ServFail;
        m.metadata.recursion_desired = query.metadata.recursion_desired;
        m.metadata.recursion_available = true;
        m.queries = query.queries.clone();
        m.to_vec().ok()
    }

    /// Relays the query, as it came, to each upstream in turn until one answers.
    async fn forward(&self, bytes: &[u8], tcp: bool) -> Option<Vec<u8>> {
        for up in &self.upstream {
            let result = if tcp {
                tokio::time::timeout(UPSTREAM_TIMEOUT, forward_tcp(*up, bytes)).await
            } else {
                tokio::time::timeout(UPSTREAM_TIMEOUT, forward_udp(*up, bytes)).await
            };
            match result {
                Ok(Ok(reply)) => return Some(reply),
                Ok(Err(e)) => tracing::debug!(upstream = %up, "forwarding: {e}"),
                Err(_) => tracing::debug!(upstream = %up, "forwarding: timed out"),
            }
        }
        if self.upstream.is_empty() {
            tracing::debug!("no upstream resolver to forward to");
        }
        None
    }
}

fn udp_limit(query: &Message) -> usize {
    match &query.edns {
        Some(e) => usize::from(e.max_payload()).clamp(UDP_PLAIN_MAX, UDP_EDNS_MAX),
        None => UDP_PLAIN_MAX,
    }
}

async fn forward_udp(up: SocketAddr, bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let local: SocketAddr = if up.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    // A socket per query: the upstream's reply cannot be confused with another client's, and
    // the kernel picks a random source port.
    let sock = UdpSocket::bind(local).await?;
    sock.connect(up).await?;
    sock.send(bytes).await?;
    let mut buf = vec![0u8; 65535];
    loop {
        let n = sock.recv(&mut buf).await?;
        // Only the answer to this query (same id) counts.
        if n >= 2 && bytes.len() >= 2 && buf[..2] == bytes[..2] {
            buf.truncate(n);
            return Ok(buf);
        }
    }
}

async fn forward_tcp(up: SocketAddr, bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut s = TcpStream::connect(up).await?;
    write_framed(&mut s, bytes).await?;
    read_framed(&mut s).await
}

async fn write_framed(s: &mut TcpStream, bytes: &[u8]) -> std::io::Result<()> {
    let len = u16::try_from(bytes.len())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "message too long"))?;
    let mut out = Vec::with_capacity(bytes.len() + 2);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
    s.write_all(&out).await
}

async fn read_framed(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let len = s.read_u16().await?;
    let mut buf = vec![0u8; usize::from(len)];
    s.read_exact(&mut buf).await?;
    Ok(buf)
}

/// Answers queries on `sock` forever.
pub async fn serve_udp(sock: Arc<UdpSocket>, resolver: Arc<Resolver>) {
    let mut buf = vec![0u8; UDP_EDNS_MAX];
    loop {
        let (n, peer) = match sock.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                // ICMP errors from earlier sends surface here; they concern one client only.
                tracing::debug!("udp receive: {e}");
                continue;
            }
        };
        let query = match resolver.step(&buf[..n], false) {
            // Answers from the records go out at once: no task, no wake-up of another thread.
            Step::Reply(Some(reply)) => {
                if let Err(e) = sock.send_to(&reply, peer).await {
                    tracing::debug!(%peer, "udp send: {e}");
                }
                continue;
            }
            Step::Reply(None) => continue,
            Step::Forward(q) => q,
        };
        // A forward waits on the network: it must not hold up the loop.
        let bytes = buf[..n].to_vec();
        let sock = sock.clone();
        let resolver = resolver.clone();
        tokio::spawn(async move {
            if let Some(reply) = resolver.forward_or_fail(&bytes, &query, false).await
                && let Err(e) = sock.send_to(&reply, peer).await
            {
                tracing::debug!(%peer, "udp send: {e}");
            }
        });
    }
}

/// Answers queries on connections to `listener` forever.
pub async fn serve_tcp(listener: TcpListener, resolver: Arc<Resolver>) {
    loop {
        let (mut stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!("tcp accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let resolver = resolver.clone();
        tokio::spawn(async move {
            loop {
                let bytes = match tokio::time::timeout(TCP_IDLE, read_framed(&mut stream)).await {
                    Ok(Ok(b)) => b,
                    _ => return,
                };
                let Some(reply) = resolver.resolve(&bytes, true).await else {
                    return;
                };
                if let Err(e) = write_framed(&mut stream, &reply).await {
                    tracing::debug!(%peer, "tcp send: {e}");
                    return;
                }
            }
        });
    }
}

/// Upstream resolvers from a resolv.conf text: every `nameserver` line, port 53. Our own
/// listen addresses are left out, so that we never forward to ourselves.
pub fn upstreams_from_resolv_conf(text: &str, own: &[SocketAddr]) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next()? == "nameserver").then_some(())?;
            let ip: std::net::IpAddr = w.next()?.split('%').next()?.parse().ok()?;
            Some(SocketAddr::new(ip, 53))
        })
        .filter(|a| !own.contains(a))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf() {
        let own: SocketAddr = "172.17.0.1:53".parse().unwrap();
        let text = "# comment\nsearch example.com\nnameserver 10.0.0.2\nnameserver  fe80::1%eth0\nnameserver 172.17.0.1\nnameserver bogus\noptions ndots:2\n";
        assert_eq!(
            upstreams_from_resolv_conf(text, &[own]),
            vec![
                "10.0.0.2:53".parse::<SocketAddr>().unwrap(),
                "[fe80::1]:53".parse().unwrap()
            ]
        );
        assert!(upstreams_from_resolv_conf("", &[]).is_empty());
    }

    #[tokio::test]
    async fn udp_and_tcp_round_trips_on_loopback() {
        use hickory_proto::op::Query;
        use hickory_proto::rr::{RData, RecordType};

        let mut records = Records::default();
        records.add(
            "c1",
            &super::super::records::normalize("a.weave.local").unwrap(),
            "10.2.0.7".parse().unwrap(),
        );
        // No upstream at all: a forwarded question gets SERVFAIL, and nothing leaves loopback.
        let resolver = Arc::new(Resolver {
            domain: super::super::records::normalize("weave.local").unwrap(),
            records: Arc::new(RwLock::new(records)),
            upstream: vec![],
        });
        let udp = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let udp_addr = udp.local_addr().unwrap();
        tokio::spawn(serve_udp(udp, resolver.clone()));
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tcp_addr = tcp.local_addr().unwrap();
        tokio::spawn(serve_tcp(tcp, resolver));

        let ask = |name: &str| {
            let mut m = Message::query();
            m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
            m
        };
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        client
            .send_to(&ask("a.weave.local.").to_vec().unwrap(), udp_addr)
            .await
            .unwrap();
        let mut buf = [0u8; 512];
        let n = client.recv(&mut buf).await.unwrap();
        let reply = Message::from_vec(&buf[..n]).unwrap();
        assert!(matches!(reply.answers[0].data, RData::A(a) if a.0.octets() == [10, 2, 0, 7]));

        client
            .send_to(&ask("elsewhere.example.").to_vec().unwrap(), udp_addr)
            .await
            .unwrap();
        let n = client.recv(&mut buf).await.unwrap();
        let reply = Message::from_vec(&buf[..n]).unwrap();
        assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);

        // Garbage with a readable id gets FORMERR.
        client.send_to(&[0xab, 0xcd, 1], udp_addr).await.unwrap();
        let n = client.recv(&mut buf).await.unwrap();
        let reply = Message::from_vec(&buf[..n]).unwrap();
        assert_eq!(reply.metadata.id, 0xabcd);
        assert_eq!(reply.metadata.response_code, ResponseCode::FormErr);

        let mut s = TcpStream::connect(tcp_addr).await.unwrap();
        for _ in 0..2 {
            write_framed(&mut s, &ask("A.weave.local.").to_vec().unwrap())
                .await
                .unwrap();
            let reply = Message::from_vec(&read_framed(&mut s).await.unwrap()).unwrap();
            assert_eq!(reply.answers.len(), 1);
        }
    }
}
