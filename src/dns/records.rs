//! What weaveDNS knows, and how a question is answered from it. Pure: no sockets here.
//!
//! A record is (container id, name, IPv4 address). Several containers may share a name (every
//! address is answered), a container may have several addresses and names, and records go per
//! address or per container when the container does.

use std::net::Ipv4Addr;

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, PTR, SOA};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

/// Answers are short-lived: containers come and go, and the original weaveDNS used 30 s too.
pub const TTL: u32 = 30;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    id: String,
    /// Lower-cased and fully qualified.
    name: Name,
    addr: Ipv4Addr,
}

#[derive(Debug, Default, Clone)]
pub struct Records {
    entries: Vec<Entry>,
}

/// A registration as the HTTP API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub id: String,
    pub name: String,
    pub addr: Ipv4Addr,
}

/// `name` as weaveDNS keys it: fully qualified, lower case. `None` if it is not a DNS name.
pub fn normalize(name: &str) -> Option<Name> {
    let trimmed = name.trim();
    if trimmed.is_empty() || trimmed == "." {
        return None;
    }
    let mut n = Name::from_ascii(trimmed).ok()?;
    n.set_fqdn(true);
    Some(n.to_lowercase())
}

impl Records {
    /// `false` if it was there already.
    pub fn add(&mut self, id: &str, name: &Name, addr: Ipv4Addr) -> bool {
        let e = Entry {
            id: id.to_string(),
            name: name.to_lowercase(),
            addr,
        };
        if self.entries.contains(&e) {
            return false;
        }
        self.entries.push(e);
        true
    }

    /// Removes `id`'s records for `addr` (only those under `name` when given); how many went.
    pub fn remove_addr(&mut self, id: &str, addr: Ipv4Addr, name: Option<&Name>) -> usize {
        let before = self.entries.len();
        self.entries
            .retain(|e| !(e.id == id && e.addr == addr && name.is_none_or(|n| e.name == *n)));
        before - self.entries.len()
    }

    /// Removes every record of container `id`; how many went.
    pub fn remove_container(&mut self, id: &str) -> usize {
        let before = self.entries.len();
        self.entries.retain(|e| e.id != id);
        before - self.entries.len()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn containers(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.entries.iter().map(|e| e.id.clone()).collect();
        ids.sort();
        ids.dedup();
        ids
    }

    pub fn list(&self) -> Vec<Registration> {
        self.entries
            .iter()
            .map(|e| Registration {
                id: e.id.clone(),
                name: e.name.to_ascii(),
                addr: e.addr,
            })
            .collect()
    }

    /// Every address under `name`, each once, in registration order.
    pub fn addresses(&self, name: &Name) -> Vec<Ipv4Addr> {
        let mut out = Vec::new();
        for e in self.entries.iter().filter(|e| e.name == *name) {
            if !out.contains(&e.addr) {
                out.push(e.addr);
            }
        }
        out
    }

    /// Every name that `addr` is registered under, each once.
    pub fn names(&self, addr: Ipv4Addr) -> Vec<Name> {
        let mut out: Vec<Name> = Vec::new();
        for e in self.entries.iter().filter(|e| e.addr == addr) {
            if !out.contains(&e.name) {
                out.push(e.name.clone());
            }
        }
        out
    }
}

/// What to do with a query.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// Answered from the records (or refused): send this.
    Local(Message),
    /// Not ours: ask the upstream resolvers.
    Forward,
}

/// Answers `query` from `records` when its question is in `domain`, or is a reverse lookup of
/// an address that has names; anything else is forwarded.
pub fn answer(records: &Records, domain: &Name, query: &Message) -> Answer {
    let id = query.metadata.id;
    let reply = |code: ResponseCode| {
        let mut m = Message::response(id, query.metadata.op_code);
        m.metadata.response_code = code;
        m.metadata.recursion_desired = query.metadata.recursion_desired;
        m.metadata.recursion_available = true;
        m.queries = query.queries.clone();
        m
    };
    if query.metadata.message_type != MessageType::Query {
        return Answer::Local(reply(ResponseCode::FormErr));
    }
    let [q] = query.queries.as_slice() else {
        // Resolvers ask one question per message; several (or none) is not a query we can
        // forward meaningfully either.
        return Answer::Local(reply(ResponseCode::FormErr));
    };
    let name = q.name();
    let in_domain = domain.zone_of(name);
    if query.metadata.op_code != OpCode::Query {
        return if in_domain {
            Answer::Local(reply(ResponseCode::NotImp))
        } else {
            Answer::Forward
        };
    }
    if q.query_class() != DNSClass::IN && q.query_class() != DNSClass::ANY {
        return if in_domain {
            Answer::Local(reply(ResponseCode::Refused))
        } else {
            Answer::Forward
        };
    }
    let qtype = q.query_type();

    if !in_domain {
        // Reverse lookups of weave addresses are ours; other reverse names are the world's.
        if matches!(qtype, RecordType::PTR | RecordType::ANY)
            && let Some(addr) = arpa_v4(name)
        {
            let names = records.names(addr);
            if !names.is_empty() {
                let mut m = reply(ResponseCode::NoError);
                m.metadata.authoritative = true;
                for n in names {
                    m.add_answer(Record::from_rdata(name.clone(), TTL, RData::PTR(PTR(n))));
                }
                return Answer::Local(m);
            }
        }
        return Answer::Forward;
    }

    let mut m = reply(ResponseCode::NoError);
    m.metadata.authoritative = true;
    let lower = name.to_lowercase();
    let addrs = records.addresses(&lower);
    let apex = lower == domain.to_lowercase();
    match qtype {
        RecordType::A | RecordType::ANY if !addrs.is_empty() => {
            for a in addrs {
                // The owner is the name as asked: resolvers may randomise its case (0x20).
                m.add_answer(Record::from_rdata(name.clone(), TTL, RData::A(A(a))));
            }
        }
        RecordType::SOA if apex => {
            m.add_answer(soa(domain));
        }
        _ if addrs.is_empty() && !apex => {
            m.metadata.response_code = ResponseCode::NXDomain;
            m.add_authority(soa(domain));
        }
        // The name exists, without data of this type (AAAA, MX...): NODATA.
        _ => {
            m.add_authority(soa(domain));
        }
    }
    Answer::Local(m)
}

/// The SOA of the weave domain, for negative answers (resolvers cache them for `minimum`).
fn soa(domain: &Name) -> Record {
    let ns = Name::from_ascii("ns")
        .and_then(|n| n.append_domain(domain))
        .unwrap_or_else(|_| domain.clone());
    let admin = Name::from_ascii("hostmaster")
        .and_then(|n| n.append_domain(domain))
        .unwrap_or_else(|_| domain.clone());
    Record::from_rdata(
        domain.clone(),
        TTL,
        RData::SOA(SOA::new(ns, admin, 1, 3600, 600, 86400, 5)),
    )
}

/// `d.c.b.a.in-addr.arpa.` → a.b.c.d; `None` for anything else (IPv6, partial names).
fn arpa_v4(name: &Name) -> Option<Ipv4Addr> {
    let labels: Vec<String> = name
        .iter()
        .map(|l| String::from_utf8_lossy(l).to_ascii_lowercase())
        .collect();
    let [d, c, b, a, in_addr, arpa] = labels.as_slice() else {
        return None;
    };
    if in_addr != "in-addr" || arpa != "arpa" {
        return None;
    }
    let octet = |s: &String| -> Option<u8> {
        // No leading zeros or signs: "010" is not an octet in a reverse name.
        if s.is_empty() || (s.len() > 1 && s.starts_with('0')) {
            return None;
        }
        s.parse().ok()
    };
    Some(Ipv4Addr::new(octet(a)?, octet(b)?, octet(c)?, octet(d)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;

    fn n(s: &str) -> Name {
        normalize(s).unwrap()
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn query(name: &str, t: RecordType) -> Message {
        let mut m = Message::query();
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), t));
        m
    }

    fn local(a: Answer) -> Message {
        match a {
            Answer::Local(m) => m,
            Answer::Forward => panic!("forwarded"),
        }
    }

    fn a_records(m: &Message) -> Vec<Ipv4Addr> {
        m.answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(A(a)) => Some(*a),
                _ => None,
            })
            .collect()
    }

    fn sample() -> Records {
        let mut r = Records::default();
        r.add("c1", &n("pingme.weave.local"), ip("10.2.3.1"));
        r.add("c2", &n("Shared.weave.local."), ip("10.2.3.2"));
        r.add("c3", &n("shared.weave.local"), ip("10.2.3.3"));
        r
    }

    #[test]
    fn names_are_normalized() {
        assert_eq!(n("A.Weave.Local").to_ascii(), "a.weave.local.");
        assert_eq!(n("x.weave.local.").to_ascii(), "x.weave.local.");
        assert_eq!(normalize(""), None);
        assert_eq!(normalize("."), None);
        assert_eq!(normalize("a..b"), None);
        assert_eq!(normalize(&format!("{}.weave.local", "a".repeat(64))), None);
    }

    #[test]
    fn add_and_remove() {
        let mut r = sample();
        assert!(
            !r.add("c1", &n("pingme.weave.local"), ip("10.2.3.1")),
            "idempotent"
        );
        assert_eq!(r.len(), 3);
        r.add("c1", &n("pingme.weave.local"), ip("10.2.4.1"));
        assert_eq!(r.remove_addr("c1", ip("10.2.4.1"), None), 1);
        assert_eq!(
            r.remove_addr("c1", ip("10.2.3.1"), Some(&n("other.weave.local"))),
            0
        );
        assert_eq!(r.remove_container("c2"), 1);
        assert_eq!(r.remove_container("nope"), 0);
        assert_eq!(r.containers(), vec!["c1".to_string(), "c3".to_string()]);
    }

    #[test]
    fn a_queries_in_the_domain() {
        let r = sample();
        let d = n("weave.local");
        let m = local(answer(&r, &d, &query("pingme.weave.local.", RecordType::A)));
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.metadata.authoritative && m.metadata.recursion_available);
        assert_eq!(m.metadata.message_type, MessageType::Response);
        assert_eq!(a_records(&m), vec![ip("10.2.3.1")]);
        // Every address of a shared name, whatever the case of the question.
        let m = local(answer(&r, &d, &query("SHARED.weave.local.", RecordType::A)));
        assert_eq!(a_records(&m), vec![ip("10.2.3.2"), ip("10.2.3.3")]);
        assert_eq!(m.answers[0].name.to_ascii(), "SHARED.weave.local.");
        assert_eq!(m.answers[0].ttl, TTL);
        // Unknown name: authoritative NXDOMAIN with the SOA, never forwarded.
        let m = local(answer(&r, &d, &query("gone.weave.local.", RecordType::A)));
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        assert_eq!(m.authorities[0].record_type(), RecordType::SOA);
        // Known name, other type: NODATA.
        let m = local(answer(
            &r,
            &d,
            &query("pingme.weave.local.", RecordType::AAAA),
        ));
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.answers.is_empty());
        assert_eq!(m.authorities.len(), 1);
        // The apex exists.
        let m = local(answer(&r, &d, &query("weave.local.", RecordType::SOA)));
        assert_eq!(m.answers[0].record_type(), RecordType::SOA);
        let m = local(answer(&r, &d, &query("weave.local.", RecordType::A)));
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    }

    #[test]
    fn other_names_are_forwarded() {
        let r = sample();
        let d = n("weave.local");
        assert_eq!(
            answer(&r, &d, &query("example.com.", RecordType::A)),
            Answer::Forward
        );
        assert_eq!(
            answer(&r, &d, &query("pingme.", RecordType::A)),
            Answer::Forward
        );
        // A reverse name we have no record for is the world's.
        assert_eq!(
            answer(&r, &d, &query("9.9.9.10.in-addr.arpa.", RecordType::PTR)),
            Answer::Forward
        );
        // Another domain.
        let other = n("corp.example");
        assert_eq!(
            answer(&r, &other, &query("pingme.weave.local.", RecordType::A)),
            Answer::Forward
        );
    }

    #[test]
    fn reverse_lookups() {
        let mut r = sample();
        r.add("c1", &n("alias.weave.local"), ip("10.2.3.1"));
        let d = n("weave.local");
        let m = local(answer(
            &r,
            &d,
            &query("1.3.2.10.in-addr.arpa.", RecordType::PTR),
        ));
        let names: Vec<String> = m
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::PTR(PTR(n)) => Some(n.to_ascii()),
                _ => None,
            })
            .collect();
        assert_eq!(names, vec!["pingme.weave.local.", "alias.weave.local."]);
        assert_eq!(
            arpa_v4(&Name::from_ascii("4.3.2.1.in-addr.arpa.").unwrap()),
            Some(ip("1.2.3.4"))
        );
        assert_eq!(
            arpa_v4(&Name::from_ascii("3.2.1.in-addr.arpa.").unwrap()),
            None
        );
        assert_eq!(
            arpa_v4(&Name::from_ascii("04.3.2.1.in-addr.arpa.").unwrap()),
            None
        );
        assert_eq!(
            arpa_v4(&Name::from_ascii("4.3.2.1.ip6.arpa.").unwrap()),
            None
        );
    }

    #[test]
    fn malformed_queries() {
        let r = sample();
        let d = n("weave.local");
        let mut none = query("x.weave.local.", RecordType::A);
        none.queries.clear();
        assert_eq!(
            local(answer(&r, &d, &none)).metadata.response_code,
            ResponseCode::FormErr
        );
        let mut response = query("x.weave.local.", RecordType::A);
        response.metadata.message_type = MessageType::Response;
        assert_eq!(
            local(answer(&r, &d, &response)).metadata.response_code,
            ResponseCode::FormErr
        );
        let mut update = query("x.weave.local.", RecordType::A);
        update.metadata.op_code = OpCode::Update;
        assert_eq!(
            local(answer(&r, &d, &update)).metadata.response_code,
            ResponseCode::NotImp
        );
    }
}
