//! The single-host IP allocator: pure bookkeeping, no I/O.
//!
//! Addresses are owned by container ids. An address (the IPv4 part, whatever its prefix) is held
//! by at most one container at a time; that is the one invariant everything here protects.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use crate::weave_cidr::Cidr;

/// Weave Net's default allocation range.
pub const DEFAULT_RANGE: Cidr = Cidr {
    addr: Ipv4Addr::new(10, 32, 0, 0),
    prefix: 12,
};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllocError {
    #[error("invalid subnet {0}: bits after the network prefix are not all zero")]
    InvalidSubnet(Cidr),
    #[error("subnet {subnet} is outside the allocation range {range}")]
    OutsideRange { subnet: Cidr, range: Cidr },
    #[error("no free addresses in subnet {0}")]
    Exhausted(Cidr),
    #[error("address {addr} is already in use by container {holder}")]
    InUse { addr: Ipv4Addr, holder: String },
}

/// What `GET /status` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub range: Cidr,
    pub default_subnet: Cidr,
    /// Number of addresses held, over all containers.
    pub allocated: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocator {
    range: Cidr,
    default_subnet: Cidr,
    /// Container id -> its addresses, in the order they were handed out.
    owned: BTreeMap<String, Vec<Cidr>>,
    /// Address -> holder; the reverse of `owned`, kept so clash checks and free-address scans do
    /// not walk every container.
    holders: BTreeMap<Ipv4Addr, String>,
}

impl Allocator {
    /// `default_subnet` must lie inside `range`; both must be subnets (no host bits).
    pub fn new(range: Cidr, default_subnet: Cidr) -> Result<Allocator, AllocError> {
        if !range.is_network() {
            return Err(AllocError::InvalidSubnet(range));
        }
        check_subnet(range, default_subnet)?;
        Ok(Allocator {
            range,
            default_subnet,
            owned: BTreeMap::new(),
            holders: BTreeMap::new(),
        })
    }

    pub fn range(&self) -> Cidr {
        self.range
    }

    pub fn default_subnet(&self) -> Cidr {
        self.default_subnet
    }

    /// An address for `id` in `subnet`: the one it already holds there, else the lowest free one.
    pub fn allocate(&mut self, id: &str, subnet: Cidr) -> Result<Cidr, AllocError> {
        check_subnet(self.range, subnet)?;
        if let Some(held) = self
            .owned
            .get(id)
            .and_then(|cidrs| cidrs.iter().find(|c| c.network() == subnet))
        {
            return Ok(*held);
        }
        let (first, last) = usable_bounds(subnet);
        // Holders are sorted, so walking them from `first` finds the lowest gap in
        // O(number of held addresses in the subnet).
        // u64 so that stepping past 255.255.255.255 cannot overflow.
        let mut candidate = u64::from(first);
        for held in self
            .holders
            .range(Ipv4Addr::from(first)..=Ipv4Addr::from(last))
            .map(|(ip, _)| u64::from(u32::from(*ip)))
        {
            if held != candidate {
                break;
            }
            candidate += 1;
        }
        let Some(candidate) = u32::try_from(candidate).ok().filter(|c| *c <= last) else {
            return Err(AllocError::Exhausted(subnet));
        };
        let cidr = Cidr {
            addr: candidate.into(),
            prefix: subnet.prefix,
        };
        self.record(id, cidr);
        Ok(cidr)
    }

    /// Records that `id` holds exactly `cidr`. Claims outside the range are accepted, as Weave
    /// does: the user knows their network better than we do.
    pub fn claim(&mut self, id: &str, cidr: Cidr) -> Result<(), AllocError> {
        match self.holders.get(&cidr.addr) {
            Some(holder) if holder == id => Ok(()),
            Some(holder) => Err(AllocError::InUse {
                addr: cidr.addr,
                holder: holder.clone(),
            }),
            None => {
                self.record(id, cidr);
                Ok(())
            }
        }
    }

    /// Frees every address of `id`; returns what it held.
    pub fn release(&mut self, id: &str) -> Vec<Cidr> {
        let cidrs = self.owned.remove(id).unwrap_or_default();
        for c in &cidrs {
            self.holders.remove(&c.addr);
        }
        cidrs
    }

    /// Frees one address of `id`; false if `id` did not hold it.
    pub fn release_addr(&mut self, id: &str, ip: Ipv4Addr) -> bool {
        let Some(cidrs) = self.owned.get_mut(id) else {
            return false;
        };
        let before = cidrs.len();
        cidrs.retain(|c| c.addr != ip);
        let removed = cidrs.len() != before;
        if cidrs.is_empty() {
            self.owned.remove(id);
        }
        if removed {
            self.holders.remove(&ip);
        }
        removed
    }

    pub fn lookup(&self, id: &str) -> Vec<Cidr> {
        self.owned.get(id).cloned().unwrap_or_default()
    }

    pub fn status(&self) -> Status {
        Status {
            range: self.range,
            default_subnet: self.default_subnet,
            allocated: self.holders.len(),
        }
    }

    /// Drops the allocations of every container for which `alive` says false (dead holders);
    /// returns the ids dropped.
    pub fn retain(&mut self, mut alive: impl FnMut(&str) -> bool) -> Vec<String> {
        let dead: Vec<String> = self.owned.keys().filter(|id| !alive(id)).cloned().collect();
        for id in &dead {
            self.release(id);
        }
        dead
    }

    /// Every container and its addresses, sorted by id.
    pub fn allocations(&self) -> impl Iterator<Item = (&str, &[Cidr])> {
        self.owned.iter().map(|(id, c)| (id.as_str(), c.as_slice()))
    }

    fn record(&mut self, id: &str, cidr: Cidr) {
        self.holders.insert(cidr.addr, id.to_string());
        self.owned.entry(id.to_string()).or_default().push(cidr);
    }
}

fn check_subnet(range: Cidr, subnet: Cidr) -> Result<(), AllocError> {
    if !subnet.is_network() {
        return Err(AllocError::InvalidSubnet(subnet));
    }
    if subnet.prefix < range.prefix || !range.contains(subnet.addr) {
        return Err(AllocError::OutsideRange { subnet, range });
    }
    Ok(())
}

/// First and last address that may be handed out in `subnet`. The network and broadcast
/// addresses are reserved, except in /31 and /32 where there is nothing else (RFC 3021).
fn usable_bounds(subnet: Cidr) -> (u32, u32) {
    let first = u32::from(subnet.addr);
    // size() - 1 fits in u32 for every prefix, including /0.
    let last = first + (subnet.size() - 1) as u32;
    if subnet.prefix <= 30 {
        (first + 1, last - 1)
    } else {
        (first, last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn default_alloc() -> Allocator {
        Allocator::new(DEFAULT_RANGE, DEFAULT_RANGE).unwrap()
    }

    #[test]
    fn first_address_skips_network() {
        let mut a = default_alloc();
        assert_eq!(a.allocate("a", DEFAULT_RANGE), Ok(c("10.32.0.1/12")));
        assert_eq!(a.allocate("b", DEFAULT_RANGE), Ok(c("10.32.0.2/12")));
    }

    #[test]
    fn allocate_is_idempotent_per_subnet() {
        let mut a = default_alloc();
        let first = a.allocate("a", DEFAULT_RANGE).unwrap();
        assert_eq!(a.allocate("a", DEFAULT_RANGE), Ok(first));
        // A different subnet gives the same container a second address.
        let other = a.allocate("a", c("10.33.1.0/24")).unwrap();
        assert_eq!(other, c("10.33.1.1/24"));
        assert_eq!(a.allocate("a", c("10.33.1.0/24")), Ok(other));
        assert_eq!(a.lookup("a"), vec![first, other]);
        assert_eq!(a.status().allocated, 2);
    }

    #[test]
    fn slash_29_gives_exactly_six() {
        let mut a = default_alloc();
        let net = c("10.40.0.0/29");
        let got: Vec<Cidr> = (0..6)
            .map(|i| a.allocate(&format!("c{i}"), net).unwrap())
            .collect();
        let want: Vec<Cidr> = (1..=6).map(|i| c(&format!("10.40.0.{i}/29"))).collect();
        assert_eq!(got, want);
        let err = a.allocate("c6", net).unwrap_err();
        assert_eq!(err, AllocError::Exhausted(net));
        assert_eq!(err.to_string(), "no free addresses in subnet 10.40.0.0/29");
    }

    #[test]
    fn slash_31_and_32_use_every_address() {
        let mut a = default_alloc();
        let n31 = c("10.40.0.0/31");
        assert_eq!(a.allocate("x", n31), Ok(c("10.40.0.0/31")));
        assert_eq!(a.allocate("y", n31), Ok(c("10.40.0.1/31")));
        assert!(a.allocate("z", n31).is_err());
        let n32 = c("10.40.0.9/32");
        assert_eq!(a.allocate("x", n32), Ok(n32));
        assert_eq!(a.allocate("y", n32), Err(AllocError::Exhausted(n32)));
    }

    #[test]
    fn release_then_reuse_lowest() {
        let mut a = default_alloc();
        let net = c("10.40.0.0/29");
        for i in 0..6 {
            a.allocate(&format!("c{i}"), net).unwrap();
        }
        assert_eq!(a.release("c2"), vec![c("10.40.0.3/29")]);
        assert_eq!(a.release("c2"), vec![]);
        assert_eq!(a.allocate("new", net), Ok(c("10.40.0.3/29")));
        assert!(a.release_addr("c0", ip("10.40.0.1")));
        assert!(!a.release_addr("c0", ip("10.40.0.1")));
        assert!(!a.release_addr("c1", ip("10.40.0.5")), "not c1's address");
        assert_eq!(a.lookup("c0"), vec![]);
        assert_eq!(a.allocate("new2", net), Ok(c("10.40.0.1/29")));
    }

    #[test]
    fn allocation_skips_claimed_addresses() {
        let mut a = default_alloc();
        a.claim("x", c("10.32.0.1/24")).unwrap();
        a.claim("y", c("10.32.0.3/12")).unwrap();
        assert_eq!(a.allocate("a", DEFAULT_RANGE), Ok(c("10.32.0.2/12")));
        assert_eq!(a.allocate("b", DEFAULT_RANGE), Ok(c("10.32.0.4/12")));
    }

    #[test]
    fn claim_clash_names_holder() {
        let mut a = default_alloc();
        a.claim("holder", c("10.2.1.1/24")).unwrap();
        assert_eq!(a.claim("holder", c("10.2.1.1/24")), Ok(()));
        let err = a.claim("other", c("10.2.1.1/16")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "address 10.2.1.1 is already in use by container holder"
        );
        // Outside the range, still recorded.
        assert_eq!(a.lookup("holder"), vec![c("10.2.1.1/24")]);
    }

    #[test]
    fn allocated_address_cannot_be_claimed_by_another() {
        let mut a = default_alloc();
        let got = a.allocate("a", DEFAULT_RANGE).unwrap();
        assert!(
            matches!(a.claim("b", got), Err(AllocError::InUse { holder, .. }) if holder == "a")
        );
    }

    #[test]
    fn bad_subnets() {
        let mut a = default_alloc();
        let err = a.allocate("a", c("10.32.0.1/24")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid subnet 10.32.0.1/24: bits after the network prefix are not all zero"
        );
        let err = a.allocate("a", c("192.168.0.0/24")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "subnet 192.168.0.0/24 is outside the allocation range 10.32.0.0/12"
        );
        // Wider than the range, even though it contains it.
        assert!(matches!(
            a.allocate("a", c("10.0.0.0/8")),
            Err(AllocError::OutsideRange { .. })
        ));
        assert_eq!(a.status().allocated, 0);
    }

    #[test]
    fn constructor_validates() {
        assert!(Allocator::new(c("10.32.0.1/12"), DEFAULT_RANGE).is_err());
        assert!(Allocator::new(DEFAULT_RANGE, c("10.0.0.0/24")).is_err());
        let a = Allocator::new(DEFAULT_RANGE, c("10.32.5.0/24")).unwrap();
        assert_eq!(a.default_subnet(), c("10.32.5.0/24"));
    }

    #[test]
    fn retain_drops_dead_holders() {
        let mut a = default_alloc();
        a.allocate("alive", DEFAULT_RANGE).unwrap();
        a.allocate("dead", DEFAULT_RANGE).unwrap();
        a.claim("dead", c("10.2.0.1/24")).unwrap();
        assert_eq!(a.retain(|id| id == "alive"), vec!["dead".to_string()]);
        assert_eq!(a.status().allocated, 1);
        assert_eq!(a.allocate("next", DEFAULT_RANGE), Ok(c("10.32.0.2/12")));
        assert!(a.claim("next", c("10.2.0.1/24")).is_ok());
    }

    #[test]
    fn never_twice_under_churn() {
        let mut a = default_alloc();
        let net = c("10.40.0.0/28");
        for round in 0..50 {
            let id = format!("c{round}");
            let got = a.allocate(&id, net).unwrap();
            let holders: Vec<_> = a
                .allocations()
                .flat_map(|(_, cs)| cs.iter().map(|c| c.addr))
                .collect();
            assert_eq!(holders.iter().filter(|h| **h == got.addr).count(), 1);
            // Keep a few alive so the free list has gaps.
            if round % 5 != 0 {
                a.release(&id);
            }
        }
        assert!(a.status().allocated <= 14);
    }

    #[test]
    fn whole_ipv4_space_edge() {
        let mut a = Allocator::new(c("0.0.0.0/0"), c("255.255.255.254/31")).unwrap();
        let top = c("255.255.255.254/31");
        assert_eq!(a.allocate("a", top), Ok(c("255.255.255.254/31")));
        assert_eq!(a.allocate("b", top), Ok(c("255.255.255.255/31")));
        assert_eq!(a.allocate("c", top), Err(AllocError::Exhausted(top)));
    }
}
