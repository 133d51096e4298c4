//! SSRF guard: webhook requests may only reach public addresses (unless
//! `webhook.allowPrivateNetworks`). Checked on the addresses DNS returned, by the resolver the HTTP
//! client connects with, so a name cannot resolve to a public address when checked and a private
//! one when used.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Why an address is refused, or None when it is public.
pub fn refusal(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => refusal_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return refusal_v4(v4);
            }
            refusal_v6(v6)
        }
    }
}

fn refusal_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_private() {
        Some("private")
    } else if ip.is_link_local() {
        Some("link-local")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if ip.is_unspecified() || a == 0 {
        Some("unspecified")
    } else if ip.is_broadcast() {
        Some("broadcast")
    } else if a == 100 && (64..128).contains(&b) {
        Some("shared (carrier-grade NAT)")
    } else {
        None
    }
}

fn refusal_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let first = ip.segments()[0];
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_unspecified() {
        Some("unspecified")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if ip.is_unicast_link_local() {
        Some("link-local")
    } else if ip.is_unique_local() {
        Some("private (unique local)")
    } else if first == 0x0064 && ip.segments()[1] == 0xff9b {
        // NAT64: the IPv4 address is in the last 32 bits.
        let [.., a, b, c, d] = ip.octets();
        refusal_v4(Ipv4Addr::new(a, b, c, d))
    } else {
        None
    }
}

/// The message for a refused address.
pub fn refused(ip: IpAddr, why: &str) -> String {
    format!("{ip} is a {why} address; webhooks may only reach public addresses (set webhook.allowPrivateNetworks to allow it)")
}

/// Resolves with the system resolver and drops refused addresses; fails when none is left.
pub struct GuardedResolver;

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = found
                .iter()
                .copied()
                .filter(|a| refusal(a.ip()).is_none())
                .collect();
            if allowed.is_empty() {
                let message = match found.first() {
                    Some(a) => format!(
                        "{host} resolves to {}",
                        refused(a.ip(), refusal(a.ip()).unwrap_or("refused"))
                    ),
                    None => format!("{host} did not resolve"),
                };
                return Err(message.into());
            }
            let addrs: Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_non_public_addresses() {
        for (ip, refused) in [
            ("10.1.2.3", true),
            ("172.16.0.1", true),
            ("192.168.1.1", true),
            ("127.0.0.1", true),
            ("169.254.169.254", true),
            ("0.0.0.0", true),
            ("224.0.0.1", true),
            ("100.64.0.1", true),
            ("255.255.255.255", true),
            ("::1", true),
            ("::", true),
            ("fe80::1", true),
            ("fc00::1", true),
            ("ff02::1", true),
            ("::ffff:127.0.0.1", true),
            ("::ffff:10.0.0.1", true),
            ("64:ff9b::a00:1", true),
            ("8.8.8.8", false),
            ("93.184.216.34", false),
            ("2606:4700::1111", false),
            ("::ffff:8.8.8.8", false),
        ] {
            let addr: IpAddr = ip.parse().unwrap();
            assert_eq!(refusal(addr).is_some(), refused, "{ip}");
        }
    }
}
