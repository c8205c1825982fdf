//! A trusted reverse proxy (oauth2-proxy, Pomerium, an ingress with OIDC) that has signed
//! the user in and names them and their groups in request headers. The headers are
//! believed only on connections from the configured proxy addresses; from anywhere else
//! they are ignored, since any client can send them.

use std::net::IpAddr;

use axum::http::{HeaderMap, HeaderName};
use ipnet::IpNet;
use rand::Rng;
use sha2::{Digest, Sha256};

use super::role::Role;
use super::{Identity, Mode};

/// Which proxies to believe, which headers they fill, and what their groups may do.
#[derive(Debug, Clone)]
pub struct ProxyRules {
    nets: Vec<IpNet>,
    user_header: HeaderName,
    groups_header: HeaderName,
    roles: Vec<(String, Role)>,
    /// Keys the per-user CSRF token: a proxied browser carries no session of ours.
    secret: [u8; 32],
}

impl ProxyRules {
    /// Rules from the flags; none when no proxy address is given.
    pub fn parse(
        cidrs: &[String],
        user_header: &str,
        groups_header: &str,
        group_roles: &[String],
    ) -> Result<Option<ProxyRules>, String> {
        if cidrs.is_empty() {
            return Ok(None);
        }
        let nets = cidrs
            .iter()
            .map(|c| {
                let c = c.trim();
                c.parse::<IpNet>()
                    .or_else(|_| c.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        format!(
                            "--trusted-proxies: '{c}' is not an address or CIDR such as 10.0.0.0/8"
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let header = |flag: &str, h: &str| {
            HeaderName::try_from(h.trim())
                .map_err(|_| format!("{flag}: '{h}' is not a header name"))
        };
        let roles = group_roles
            .iter()
            .map(|g| {
                let (group, role) = g
                    .rsplit_once('=')
                    .ok_or_else(|| format!("--proxy-group-role: '{g}' is not GROUP=ROLE"))?;
                Ok((group.trim().to_string(), role.parse::<Role>()?))
            })
            .collect::<Result<Vec<_>, String>>()?;
        if roles.is_empty() {
            return Err("--trusted-proxies needs at least one --proxy-group-role GROUP=ROLE, or nobody behind the proxy could do anything".into());
        }
        Ok(Some(ProxyRules {
            nets,
            user_header: header("--proxy-user-header", user_header)?,
            groups_header: header("--proxy-groups-header", groups_header)?,
            roles,
            secret: rand::rng().random(),
        }))
    }

    /// Whether `peer` is one of the trusted proxies.
    pub fn trusts(&self, peer: IpAddr) -> bool {
        self.nets.iter().any(|n| n.contains(&peer))
    }

    /// The address a request came from before the trusted proxy: the last entry of the
    /// `X-Forwarded-For` it added, when `peer` is a trusted proxy and the entry is an
    /// address; else `peer` itself (anyone else can write that header).
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .last()
            .and_then(|a| a.trim().parse().ok())
            .unwrap_or(peer)
    }

    /// The identity a request from `peer` carries in its headers: none unless the peer is
    /// a trusted proxy, the user header is set, and one of the groups has a role (the
    /// highest wins).
    pub fn identity(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<Identity> {
        if !self.trusts(peer?) {
            return None;
        }
        let text = |h: &HeaderName| headers.get(h).and_then(|v| v.to_str().ok()).map(str::trim);
        let user = text(&self.user_header).filter(|u| !u.is_empty())?;
        let groups: Vec<&str> = text(&self.groups_header)
            .map(|g| g.split(',').map(str::trim).collect())
            .unwrap_or_default();
        let role = self
            .roles
            .iter()
            .filter(|(group, _)| groups.contains(&group.as_str()))
            .map(|(_, r)| *r)
            .max()?;
        let mut mac = Sha256::new();
        mac.update(self.secret);
        mac.update(user.as_bytes());
        Some(Identity {
            name: user.to_string(),
            role,
            mode: Mode::Proxy,
            csrf: Some(super::hex(&mac.finalize())),
            session: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn only_listed_proxies_are_believed_and_groups_map_to_the_highest_role() {
        let rules = ProxyRules::parse(
            &["10.0.0.0/8".into(), "192.168.1.5".into()],
            "X-Forwarded-User",
            "X-Forwarded-Groups",
            &["dlq-ops=operator".into(), "dlq-admins=admin".into()],
        )
        .unwrap()
        .unwrap();
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-user", HeaderValue::from_static("pat"));
        h.insert(
            "x-forwarded-groups",
            HeaderValue::from_static("staff, dlq-ops"),
        );
        let who = rules
            .identity(Some("10.1.2.3".parse().unwrap()), &h)
            .unwrap();
        assert_eq!(
            (who.name.as_str(), who.role, who.mode),
            ("pat", Role::Operator, Mode::Proxy)
        );
        assert!(rules
            .identity(Some("192.168.1.5".parse().unwrap()), &h)
            .is_some());
        assert!(
            rules
                .identity(Some("192.168.1.6".parse().unwrap()), &h)
                .is_none(),
            "not a listed proxy"
        );
        assert!(rules.identity(None, &h).is_none());
        let proxy: IpAddr = "10.1.2.3".parse().unwrap();
        let stranger: IpAddr = "192.168.1.6".parse().unwrap();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("1.1.1.1, 203.0.113.7"),
        );
        assert_eq!(
            rules.client(proxy, &h),
            "203.0.113.7".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            rules.client(stranger, &h),
            stranger,
            "only a proxy is believed"
        );
        h.insert("x-forwarded-for", HeaderValue::from_static("garbage"));
        assert_eq!(rules.client(proxy, &h), proxy);
        h.insert("x-forwarded-groups", HeaderValue::from_static("staff"));
        assert!(
            rules
                .identity(Some("10.1.2.3".parse().unwrap()), &h)
                .is_none(),
            "no mapped group"
        );
        assert!(ProxyRules::parse(&["nope".into()], "a", "b", &["g=admin".into()]).is_err());
        assert!(ProxyRules::parse(&["10.0.0.0/8".into()], "a", "b", &[]).is_err());
        assert!(ProxyRules::parse(&[], "a", "b", &[]).unwrap().is_none());
    }
}
