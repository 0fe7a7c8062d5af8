//! Joining a container's network namespace to the weave bridge, over netlink:
//! a veth pair with the bridge's MTU, the host end on the bridge, the other end made inside the
//! container's namespace as `ethwe`, given the container's addresses and only then set up
//! (weavewait execs the application once `ethwe` is up with an address).

use std::net::IpAddr;
use std::os::fd::AsFd;

use futures_util::TryStreamExt;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{InfoData, InfoVeth, LinkAttribute, LinkMessage};
use rtnetlink::{Handle, LinkBridge, LinkMessageBuilder, LinkUnspec, LinkVeth};

use crate::weave_cidr::Cidr;

pub const IFACE: &str = "ethwe";

#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error("netlink: {0}")]
    Netlink(#[from] rtnetlink::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("entering the network namespace of process {pid}: {err}")]
    Netns { pid: u32, err: String },
    #[error("{0}")]
    Other(String),
}

/// What [`Netlink::prepare`] found or made.
#[derive(Debug)]
pub enum Prepared {
    /// `ethwe` was there already.
    Existing,
    /// A new veth pair; `host` is its end on the bridge.
    New { host: String },
}

/// What an attach found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attached {
    /// A new `ethwe` with these addresses.
    New,
    /// `ethwe` was there already; only missing addresses were added (maybe none).
    Existing { added: usize },
}

/// A netlink connection in the proxy's own (host) network namespace.
pub mod firewall;

#[derive(Clone)]
pub struct Netlink {
    handle: Handle,
    forwarding: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
}

impl Netlink {
    /// Must be called inside a tokio runtime: the connection runs as a task on it.
    pub fn new() -> std::io::Result<Netlink> {
        let (conn, handle, _) = rtnetlink::new_connection()?;
        tokio::spawn(conn);
        Ok(Netlink {
            handle,
            forwarding: Default::default(),
        })
    }

    pub async fn link_by_name(&self, name: &str) -> Result<Option<LinkMessage>, AttachError> {
        link_by_name(&self.handle, name).await
    }

    /// The bridge's index and MTU; it is created and brought up if absent.
    pub async fn ensure_bridge(&self, name: &str) -> Result<(u32, u32), AttachError> {
        if let Some(link) = self.link_by_name(name).await? {
            let index = link.header.index;
            if !is_up(&link) {
                self.handle
                    .link()
                    .set(LinkUnspec::new_with_index(index).up().build())
                    .execute()
                    .await?;
            }
            self.allow_forwarding(name).await;
            return Ok((index, mtu(&link).unwrap_or(1500)));
        }
        match self
            .handle
            .link()
            .add(LinkBridge::new(name).up().build())
            .execute()
            .await
        {
            Ok(()) => {}
            // Someone else (another proxy, the network service) made it just now.
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc_eexist() => {}
            Err(e) => return Err(e.into()),
        }
        let link = self
            .link_by_name(name)
            .await?
            .ok_or_else(|| AttachError::Other(format!("bridge {name} vanished after creation")))?;
        // A bridge made anew may have had its rule removed with it (`weave stop` takes both
        // when nothing uses them), so the rule is checked again, not taken as done.
        self.forwarding
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
        self.allow_forwarding(name).await;
        Ok((link.header.index, mtu(&link).unwrap_or(1500)))
    }

    /// Docker loads br_netfilter and sets the FORWARD policy to DROP, so bridged traffic between
    /// weave interfaces needs an ACCEPT rule, as the original's `FORWARD -i weave -o weave`.
    /// Done once per bridge and process (it is a subprocess, not for every attach).
    async fn allow_forwarding(&self, bridge: &str) {
        {
            let mut done = self.forwarding.lock().unwrap_or_else(|p| p.into_inner());
            if !done.insert(bridge.to_string()) {
                return;
            }
        }
        let bridge = bridge.to_string();
        let result = tokio::task::spawn_blocking(move || firewall::allow_bridge(&bridge)).await;
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!("containers on the weave bridge may not reach each other: {e}")
            }
            Err(e) => tracing::warn!("iptables: {e}"),
        }
    }

    pub async fn delete_link(&self, name: &str) -> Result<bool, AttachError> {
        match self.link_by_name(name).await? {
            Some(link) => {
                self.handle.link().del(link.header.index).execute().await?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Gives link `name` the address `cidr`, if it has not got it yet.
    pub async fn add_link_address(&self, name: &str, cidr: Cidr) -> Result<(), AttachError> {
        let link = self
            .link_by_name(name)
            .await?
            .ok_or_else(|| AttachError::Other(format!("no link {name}")))?;
        add_addresses(&self.handle, link.header.index, &[cidr]).await?;
        Ok(())
    }

    /// Takes `cidr` off link `name`; `false` if it did not have it (or there is no such link).
    pub async fn del_link_address(&self, name: &str, cidr: Cidr) -> Result<bool, AttachError> {
        let Some(link) = self.link_by_name(name).await? else {
            return Ok(false);
        };
        let mut addrs = self
            .handle
            .address()
            .get()
            .set_link_index_filter(link.header.index)
            .execute();
        while let Some(msg) = addrs.try_next().await? {
            let matches = msg.header.prefix_len == cidr.prefix
                && msg.attributes.iter().any(
                    |a| matches!(a, AddressAttribute::Address(ip) if *ip == IpAddr::V4(cidr.addr)),
                );
            if matches {
                self.handle.address().del(msg).execute().await?;
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Attaches the network namespace of process `pid` to `bridge` with `cidrs`. Idempotent:
    /// with `ethwe` present it only adds missing addresses.
    pub async fn attach(
        &self,
        pid: u32,
        bridge: &str,
        cidrs: &[Cidr],
    ) -> Result<Attached, AttachError> {
        let prepared = self.prepare(pid, bridge).await?;
        self.finish(pid, prepared, cidrs).await
    }

    /// The part of an attach that needs no addresses, so that it can run while they are being
    /// claimed or allocated: with no `ethwe` in the namespace, the veth pair is made, `ethwe`
    /// still down and without addresses. [`Netlink::finish`] or [`Netlink::abandon`] follows.
    pub async fn prepare(&self, pid: u32, bridge: &str) -> Result<Prepared, AttachError> {
        let present = in_netns(pid, |h| async move {
            Ok(link_by_name(&h, IFACE).await?.is_some())
        })
        .await?;
        if present {
            return Ok(Prepared::Existing);
        }
        let (bridge_index, mtu) = self.ensure_bridge(bridge).await?;
        let host_name = host_veth_name(pid);
        // A veth from an attempt that failed half-way.
        self.delete_link(&host_name).await?;
        // The container's end is made inside its namespace, already named `ethwe` and down:
        // moving a link between namespaces makes the kernel wait for RCU grace periods
        // (15-30 ms measured here), creating it there costs about a millisecond. The host end
        // is on the bridge and up from the start.
        let peer = LinkMessageBuilder::<LinkUnspec>::new()
            .name(IFACE.to_string())
            .mtu(mtu)
            .setns_by_pid(pid)
            .build();
        self.handle
            .link()
            .add(
                LinkVeth::new(&host_name, IFACE)
                    .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
                    .mtu(mtu)
                    .controller(bridge_index)
                    .up()
                    .build(),
            )
            .execute()
            .await?;
        Ok(Prepared::New { host: host_name })
    }

    /// Gives `ethwe` its addresses, then sets it up.
    pub async fn finish(
        &self,
        pid: u32,
        prepared: Prepared,
        cidrs: &[Cidr],
    ) -> Result<Attached, AttachError> {
        let wanted = cidrs.to_vec();
        let host = match prepared {
            Prepared::Existing => {
                let added = in_netns(pid, move |h| add_missing(h, wanted)).await?;
                return Ok(Attached::Existing { added });
            }
            Prepared::New { host } => host,
        };
        if let Err(e) = in_netns(pid, move |h| configure_peer(h, wanted)).await {
            // The peer dies with its twin wherever it is.
            let _ = self.delete_link(&host).await;
            return Err(e);
        }
        Ok(Attached::New)
    }

    /// Undoes [`Netlink::prepare`] when the attach cannot go on.
    pub async fn abandon(&self, prepared: Prepared) {
        if let Prepared::New { host } = prepared
            && let Err(e) = self.delete_link(&host).await
        {
            tracing::warn!("removing {host}: {e}");
        }
    }
}

/// `ethwe` of the process's network namespace: its MAC and addresses, if it has one.
pub async fn inspect_iface(pid: u32) -> Result<Option<(String, Vec<String>)>, AttachError> {
    in_netns(pid, |h| async move {
        let Some(link) = link_by_name(&h, IFACE).await? else {
            return Ok(None);
        };
        let mac = link
            .attributes
            .iter()
            .find_map(|a| match a {
                LinkAttribute::Address(m) => Some(
                    m.iter()
                        .map(|b| format!("{b:02x}"))
                        .collect::<Vec<_>>()
                        .join(":"),
                ),
                _ => None,
            })
            .unwrap_or_default();
        let addrs = addresses(&h, link.header.index)
            .await?
            .into_iter()
            .filter(|(ip, _)| ip.is_ipv4())
            .map(|(ip, p)| format!("{ip}/{p}"))
            .collect();
        Ok(Some((mac, addrs)))
    })
    .await
}

fn libc_eexist() -> i32 {
    nix::errno::Errno::EEXIST as i32
}

/// `vethwepl<pid>`, cut to the kernel's 15 characters like the original.
pub fn host_veth_name(pid: u32) -> String {
    let id: String = pid
        .to_string()
        .chars()
        .take(15 - "vethwepl".len())
        .collect();
    format!("vethwepl{id}")
}

async fn link_by_name(handle: &Handle, name: &str) -> Result<Option<LinkMessage>, AttachError> {
    let mut links = handle.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(link) => Ok(link),
        // A missing link is an ENODEV error, not an empty answer.
        Err(rtnetlink::Error::NetlinkError(e))
            if e.raw_code() == -(nix::errno::Errno::ENODEV as i32) =>
        {
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

fn is_up(link: &LinkMessage) -> bool {
    link.header
        .flags
        .contains(rtnetlink::packet_route::link::LinkFlags::Up)
}

fn mtu(link: &LinkMessage) -> Option<u32> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::Mtu(m) => Some(*m),
        _ => None,
    })
}

async fn addresses(handle: &Handle, index: u32) -> Result<Vec<(IpAddr, u8)>, AttachError> {
    let mut out = Vec::new();
    let mut addrs = handle
        .address()
        .get()
        .set_link_index_filter(index)
        .execute();
    while let Some(msg) = addrs.try_next().await? {
        for attr in &msg.attributes {
            if let AddressAttribute::Address(ip) = attr {
                out.push((*ip, msg.header.prefix_len));
            }
        }
    }
    Ok(out)
}

async fn add_addresses(handle: &Handle, index: u32, cidrs: &[Cidr]) -> Result<usize, AttachError> {
    let have = addresses(handle, index).await?;
    let mut added = 0;
    for c in cidrs {
        if have.contains(&(IpAddr::V4(c.addr), c.prefix)) {
            continue;
        }
        handle
            .address()
            .add(index, IpAddr::V4(c.addr), c.prefix)
            .execute()
            .await?;
        added += 1;
    }
    Ok(added)
}

/// Inside the namespace: what an `ethwe` that is there already lacks.
async fn add_missing(handle: Handle, cidrs: Vec<Cidr>) -> Result<usize, AttachError> {
    let link = link_by_name(&handle, IFACE)
        .await?
        .ok_or_else(|| AttachError::Other(format!("{IFACE} vanished from the container")))?;
    let added = add_addresses(&handle, link.header.index, &cidrs).await?;
    if !is_up(&link) {
        handle
            .link()
            .set(LinkUnspec::new_with_index(link.header.index).up().build())
            .execute()
            .await?;
    }
    Ok(added)
}

/// Inside the namespace: addresses, and only then up.
async fn configure_peer(handle: Handle, cidrs: Vec<Cidr>) -> Result<(), AttachError> {
    let link = link_by_name(&handle, IFACE)
        .await?
        .ok_or_else(|| AttachError::Other(format!("{IFACE} did not appear in the container")))?;
    let index = link.header.index;
    add_addresses(&handle, index, &cidrs).await?;
    handle
        .link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await?;
    Ok(())
}

/// Runs `f` with a netlink connection inside the network namespace of `pid`.
///
/// `setns` changes only the calling thread, so this uses a thread of its own that ends
/// afterwards (never a pooled tokio thread), and a netlink socket opened after the switch
/// (a socket belongs to the namespace it was made in).
pub async fn in_netns<F, Fut, T>(pid: u32, f: F) -> Result<T, AttachError>
where
    F: FnOnce(Handle) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<T, AttachError>>,
    T: Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("netns".into())
        .spawn(move || {
            let run = || -> Result<T, AttachError> {
                let ns = std::fs::File::open(format!("/proc/{pid}/ns/net")).map_err(|e| {
                    AttachError::Netns {
                        pid,
                        err: e.to_string(),
                    }
                })?;
                nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).map_err(
                    |e| AttachError::Netns {
                        pid,
                        err: e.to_string(),
                    },
                )?;
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                rt.block_on(async {
                    let (conn, handle, _) = rtnetlink::new_connection()?;
                    tokio::spawn(conn);
                    f(handle).await
                })
            };
            let _ = tx.send(run());
        })?;
    rx.await
        .map_err(|_| AttachError::Other("network namespace worker died".into()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn veth_names_fit_the_kernel() {
        assert_eq!(host_veth_name(42), "vethwepl42");
        assert_eq!(host_veth_name(4_194_304), "vethwepl4194304");
        assert_eq!(host_veth_name(u32::MAX).len(), 15);
    }
}
