//! The `WEAVE_CIDR` grammar: what a container asks of the weave network.
//!
//! `WEAVE_CIDR` holds space-separated tokens: `a.b.c.d/n` or `ip:a.b.c.d/n` claims that address,
//! `net:a.b.c.d/n` allocates one in that subnet, `net:default` allocates in the default subnet.
//! A blank value means "allocate in the default subnet"; `none` means "leave me alone".

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An IPv4 address with its prefix length, as in `10.2.1.1/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Cidr {
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Option<Cidr> {
        (prefix <= 32).then_some(Cidr { addr, prefix })
    }

    pub fn mask(&self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.prefix))
        }
    }

    /// The subnet this address lies in, e.g. `10.2.1.0/24` for `10.2.1.1/24`.
    pub fn network(&self) -> Cidr {
        Cidr {
            addr: Ipv4Addr::from(u32::from(self.addr) & self.mask()),
            prefix: self.prefix,
        }
    }

    pub fn is_network(&self) -> bool {
        self.network().addr == self.addr
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.addr) & self.mask()
    }

    /// Number of addresses in the subnet (2^(32-prefix)).
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.prefix))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid CIDR \"{0}\"")]
pub struct CidrParseError(pub String);

impl FromStr for Cidr {
    type Err = CidrParseError;

    fn from_str(s: &str) -> Result<Cidr, CidrParseError> {
        let err = || CidrParseError(s.to_string());
        let (addr, prefix) = s.split_once('/').ok_or_else(err)?;
        // Ipv4Addr's parser already refuses octets over 255 and leading zeros.
        let addr: Ipv4Addr = addr.parse().map_err(|_| err())?;
        if prefix.is_empty() || prefix.len() > 2 || !prefix.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err());
        }
        let prefix: u8 = prefix.parse().map_err(|_| err())?;
        Cidr::new(addr, prefix).ok_or_else(err)
    }
}

/// One `WEAVE_CIDR` token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Token {
    /// `a.b.c.d/n` or `ip:a.b.c.d/n`: this exact address.
    Claim(Cidr),
    /// `net:a.b.c.d/n`: any free address in this subnet.
    Net(Cidr),
    /// `net:default` (or a blank `WEAVE_CIDR`): any free address in the default subnet.
    NetDefault,
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Token::Claim(c) => write!(f, "ip:{c}"),
            Token::Net(c) => write!(f, "net:{c}"),
            Token::NetDefault => f.write_str("net:default"),
        }
    }
}

/// What a container asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `WEAVE_CIDR=none`: hands off.
    None,
    /// Attach with these addresses (never empty: blank means `[NetDefault]`).
    Attach(Vec<Token>),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid WEAVE_CIDR \"{value}\": {reason}")]
pub struct WeaveCidrError {
    pub value: String,
    pub reason: String,
}

/// Parses a `WEAVE_CIDR` value (the part after `=`).
pub fn parse(value: &str) -> Result<Request, WeaveCidrError> {
    let trimmed = value.trim();
    if trimmed == "none" {
        return Ok(Request::None);
    }
    let mut tokens = Vec::new();
    for word in trimmed.split_whitespace() {
        let bad = |reason: String| {
            // The value is named by the error already: a lone word is not named twice.
            let quoted = format!("\"{word}\"");
            let reason = match reason.strip_prefix(&quoted) {
                Some(rest) if trimmed == word => match rest.strip_prefix(": ") {
                    Some(r) => r.to_string(),
                    None => format!("it{rest}"),
                },
                _ => reason,
            };
            WeaveCidrError {
                value: value.to_string(),
                reason,
            }
        };
        let token = if word == "net:default" {
            Token::NetDefault
        } else if let Some(net) = word.strip_prefix("net:") {
            let cidr: Cidr = net
                .parse()
                .map_err(|e: CidrParseError| bad(e.to_string()))?;
            if !cidr.is_network() {
                return Err(bad(format!(
                    "\"{word}\": the subnet must have no bits set after its /{} prefix (did you mean net:{}?)",
                    cidr.prefix,
                    cidr.network()
                )));
            }
            if let Some(why) = unusable_range(cidr.addr) {
                return Err(bad(format!("\"{word}\" is {why}")));
            }
            if cidr.prefix == 0 || cidr.prefix > 30 {
                return Err(bad(format!(
                    "\"{word}\": a subnet to allocate in needs a prefix from /1 to /30"
                )));
            }
            Token::Net(cidr)
        } else {
            let ip = word.strip_prefix("ip:").unwrap_or(word);
            let cidr: Cidr = ip.parse().map_err(|_| {
                bad(format!(
                    "\"{word}\" is not an address like 10.2.1.1/24, ip:CIDR, net:CIDR or net:default"
                ))
            })?;
            if let Some(why) = unusable_address(cidr) {
                return Err(bad(format!("\"{word}\": {why}")));
            }
            if let Some(Token::Claim(same)) = tokens
                .iter()
                .find(|t| matches!(t, Token::Claim(c) if c.addr == cidr.addr))
            {
                return Err(bad(format!(
                    "{} is asked for twice ({same} and {cidr})",
                    cidr.addr
                )));
            }
            Token::Claim(cidr)
        };
        if matches!(token, Token::Net(_) | Token::NetDefault) && tokens.contains(&token) {
            return Err(bad(format!(
                "{word} is asked for twice: one interface takes one address per subnet"
            )));
        }
        tokens.push(token);
    }
    if tokens.is_empty() {
        tokens.push(Token::NetDefault);
    }
    Ok(Request::Attach(tokens))
}

/// Why an address cannot go on an interface, if it cannot: the kernel takes some of these
/// (and the container then has an address nothing can reach), others it refuses with a bare
/// errno; either way the user learns it at create, in words.
fn unusable_address(c: Cidr) -> Option<String> {
    if c.prefix == 0 {
        return Some("/0 is every address, not a subnet an interface can be on".into());
    }
    if let Some(why) = unusable_range(c.addr) {
        return Some(format!("{} is {why}", c.addr));
    }
    if c.prefix <= 30 {
        let net = c.network();
        if c.addr == net.addr {
            return Some(format!(
                "{} is the network address of {net}, not a host's",
                c.addr
            ));
        }
        let broadcast = Ipv4Addr::from(u32::from(net.addr) | !c.mask());
        if c.addr == broadcast {
            return Some(format!("{} is the broadcast address of {net}", c.addr));
        }
    }
    None
}

fn unusable_range(ip: Ipv4Addr) -> Option<&'static str> {
    if ip.is_unspecified() {
        Some("the unspecified address")
    } else if ip.octets()[0] == 0 {
        Some("in 0.0.0.0/8, which means \"this network\" and is never a host's")
    } else if ip.is_loopback() {
        Some("a loopback address (127.0.0.0/8)")
    } else if ip.is_multicast() {
        Some("a multicast address (224.0.0.0/4)")
    } else if ip.is_broadcast() || ip.octets()[0] >= 240 {
        Some("a reserved address (240.0.0.0/4)")
    } else {
        None
    }
}

/// A container's `WEAVE_CIDR`, as its process sees it: Docker keeps the last entry of a name
/// given twice (`-e WEAVE_CIDR=a -e WEAVE_CIDR=b` runs with `b`).
pub fn from_env<'a>(env: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    env.into_iter()
        .filter_map(|e| e.strip_prefix("WEAVE_CIDR="))
        .last()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    #[test]
    fn blank_means_default_subnet() {
        assert_eq!(parse(""), Ok(Request::Attach(vec![Token::NetDefault])));
        assert_eq!(parse("   "), Ok(Request::Attach(vec![Token::NetDefault])));
    }

    #[test]
    fn none_is_hands_off() {
        assert_eq!(parse("none"), Ok(Request::None));
    }

    #[test]
    fn all_forms() {
        assert_eq!(
            parse("10.2.1.1/24 ip:10.2.2.1/24 net:10.2.3.0/24 net:default"),
            Ok(Request::Attach(vec![
                Token::Claim(c("10.2.1.1/24")),
                Token::Claim(c("10.2.2.1/24")),
                Token::Net(c("10.2.3.0/24")),
                Token::NetDefault,
            ]))
        );
    }

    #[test]
    fn bad_values_name_themselves() {
        for bad in [
            "invalid",
            "10.2.1.1/24 bogus",
            "net:10.2.300.0/24",
            "ip:10.2.1.1/33",
            "10.2.1.1",
            "10.2.1.1/",
            "net:10.2.1.1/24",
            "10.2.1.1/024",
            "0.0.0.0/0",
            "10.2.1.1/0",
            "224.0.0.1/4",
            "127.0.0.1/8",
            "255.255.255.255/32",
            "240.0.0.1/8",
            "10.2.1.0/24",
            "10.2.1.255/24",
            "10.2.1.1/24 10.2.1.1/24",
            "10.2.1.1/24 ip:10.2.1.1/16",
            "net:0.0.0.0/0",
            "net:127.0.0.0/8",
            "net:10.2.1.0/31",
            "0.1.2.3/8",
            "net:default net:default",
            "net:10.2.1.0/24 net:10.2.1.0/24",
        ] {
            let err = parse(bad).unwrap_err();
            assert_eq!(err.value, bad);
            let text = err.to_string();
            assert!(
                text.starts_with(&format!("invalid WEAVE_CIDR \"{bad}\"")),
                "{text}"
            );
            assert!(!text.contains('\n'));
        }
        assert_eq!(
            parse("0.0.0.0/0").unwrap_err().to_string(),
            "invalid WEAVE_CIDR \"0.0.0.0/0\": /0 is every address, not a subnet an interface can be on"
        );
        assert_eq!(
            parse("bogus").unwrap_err().to_string(),
            "invalid WEAVE_CIDR \"bogus\": it is not an address like 10.2.1.1/24, ip:CIDR, net:CIDR or net:default"
        );
        let two = parse("10.2.1.1/24 bogus").unwrap_err().to_string();
        assert!(two.contains(": \"bogus\" is not"), "{two}");
    }

    #[test]
    fn host_addresses_at_the_edges_are_fine() {
        for good in [
            "10.2.1.1/24",
            "10.2.1.254/24",
            "10.2.1.0/31",
            "10.2.1.1/31",
            "10.2.1.7/32",
            "169.254.1.1/16",
            "10.2.1.1/24 10.2.2.1/24",
            "net:10.2.1.0/30",
        ] {
            assert!(parse(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn last_env_entry_wins() {
        let env = ["A=1", "WEAVE_CIDR=10.2.1.1/24", "WEAVE_CIDR=none"];
        assert_eq!(from_env(env), Some("none"));
        assert_eq!(from_env(["A=1"]), None);
        assert_eq!(from_env(["WEAVE_CIDR="]), Some(""));
    }

    #[test]
    fn cidr_arithmetic() {
        let x = c("10.2.1.7/24");
        assert_eq!(x.network(), c("10.2.1.0/24"));
        assert!(x.contains("10.2.1.200".parse().unwrap()));
        assert!(!x.contains("10.2.2.1".parse().unwrap()));
        assert_eq!(c("10.32.0.0/12").size(), 1 << 20);
        assert_eq!(c("0.0.0.0/0").mask(), 0);
    }
}
