//! UDP conntrack cleanup, as kube-proxy's conntrack reconciler does it (v1.32+): after
//! a sync, every UDP flow whose original destination is a service IP and port (or a
//! NodePort) and whose reply source is not a serving endpoint of that service is
//! deleted, so clients stop sending into a removed endpoint (the "blackholed DNS"
//! problem) and flows created while a service had no endpoints are redone.
//!
//! The decision is pure ([`stale_flows`]); listing and deleting go through
//! [`crate::exec::ConntrackExec`].

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use crate::model::{IpFamily, Protocol, ProxyState, join_host_port};

/// One UDP conntrack flow: its original and reply tuples.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Flow {
    /// Original source address.
    pub orig_src: IpAddr,
    /// Original destination address (the service IP).
    pub orig_dst: IpAddr,
    /// Original source port.
    pub orig_sport: u16,
    /// Original destination port.
    pub orig_dport: u16,
    /// Reply source address (the DNAT target, or the service IP if not DNATed).
    pub reply_src: IpAddr,
    /// Reply destination address.
    pub reply_dst: IpAddr,
    /// Reply source port.
    pub reply_sport: u16,
    /// Reply destination port.
    pub reply_dport: u16,
}

impl Flow {
    /// The flow as `conntrack -L` prints a UDP flow.
    pub fn to_conntrack_line(&self) -> String {
        format!(
            "udp      17 29 src={} dst={} sport={} dport={} [UNREPLIED] src={} dst={} sport={} dport={} mark=0 use=1",
            self.orig_src,
            self.orig_dst,
            self.orig_sport,
            self.orig_dport,
            self.reply_src,
            self.reply_dst,
            self.reply_sport,
            self.reply_dport
        )
    }
}

/// Parse `conntrack -L -p udp` output. Lines that are not UDP flows (the summary, other
/// protocols) are skipped; so is a flow with a missing or unparsable field.
pub fn parse_flows(text: &str) -> Vec<Flow> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Flow> {
    let mut words = line.split_whitespace();
    let first = words.next()?;
    // `-o extended` puts the layer-3 protocol first.
    let proto = if first == "ipv4" || first == "ipv6" {
        words.next();
        words.next()?
    } else {
        first
    };
    if proto != "udp" {
        return None;
    }
    let (mut src, mut dst, mut sport, mut dport) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for w in words {
        if let Some(v) = w.strip_prefix("src=") {
            src.push(v.parse::<IpAddr>().ok()?);
        } else if let Some(v) = w.strip_prefix("dst=") {
            dst.push(v.parse::<IpAddr>().ok()?);
        } else if let Some(v) = w.strip_prefix("sport=") {
            sport.push(v.parse::<u16>().ok()?);
        } else if let Some(v) = w.strip_prefix("dport=") {
            dport.push(v.parse::<u16>().ok()?);
        }
    }
    if src.len() < 2 || dst.len() < 2 || sport.len() < 2 || dport.len() < 2 {
        return None;
    }
    Some(Flow {
        orig_src: src[0],
        orig_dst: dst[0],
        orig_sport: sport[0],
        orig_dport: dport[0],
        reply_src: src[1],
        reply_dst: dst[1],
        reply_sport: sport[1],
        reply_dport: dport[1],
    })
}

/// The UDP flows to delete: destination a UDP service's ClusterIP, external IP or
/// LoadBalancer IP and port (or the destination port one of its NodePorts, to a node
/// address in `node_ips`), and reply source not one of the service's serving endpoints
/// (traffic policy, topology and terminating state deliberately ignored, as upstream:
/// existing flows keep working like TCP's). Services without endpoints count: their
/// flows were never DNATed and must be redone once endpoints come.
pub fn stale_flows(state: &ProxyState, node_ips: &[IpAddr], flows: &[Flow]) -> Vec<Flow> {
    let mut by_ip_port: HashMap<String, HashSet<String>> = HashMap::new();
    let mut by_node_port: HashMap<u16, HashSet<String>> = HashMap::new();
    for (name, svc) in &state.services {
        if svc.protocol() != Protocol::Udp {
            continue;
        }
        let serving: HashSet<String> = state
            .endpoints_of(name)
            .iter()
            .filter(|e| e.serving)
            .map(|e| e.address())
            .collect();
        let ips = std::iter::once(&svc.cluster_ip)
            .chain(svc.external_ips.iter())
            .chain(svc.load_balancer_ips.iter());
        for ip in ips {
            by_ip_port
                .entry(join_host_port(ip, svc.port))
                .or_default()
                .extend(serving.iter().cloned());
        }
        if let Some(np) = svc.node_port {
            by_node_port
                .entry(np)
                .or_default()
                .extend(serving.iter().cloned());
        }
    }
    flows
        .iter()
        .filter(|f| {
            let reply = join_host_port(&f.reply_src, f.reply_sport);
            if let Some(serving) = by_ip_port.get(&join_host_port(&f.orig_dst, f.orig_dport)) {
                return !serving.contains(&reply);
            }
            let to_node = node_ips.contains(&f.orig_dst) || f.orig_dst.is_loopback();
            match by_node_port.get(&f.orig_dport) {
                Some(serving) if to_node => !serving.contains(&reply),
                _ => false,
            }
        })
        .cloned()
        .collect()
}

/// The result of one cleanup.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CleanupReport {
    /// Flows deleted.
    pub deleted: usize,
    /// Deletions that failed (the next sync's reconciliation retries them).
    pub failed: usize,
}

/// List the family's UDP flows, delete the stale ones.
pub async fn cleanup(
    exec: &dyn crate::exec::ConntrackExec,
    family: IpFamily,
    state: &ProxyState,
    node_ips: &[IpAddr],
) -> crate::Result<CleanupReport> {
    let flows = exec.list_udp(family).await?;
    let mut report = CleanupReport::default();
    for flow in stale_flows(state, node_ips, &flows) {
        match exec.delete(family, &flow).await {
            Ok(()) => report.deleted += 1,
            Err(e) => {
                tracing::warn!(error = %e, ?flow, "deleting a stale UDP conntrack flow failed");
                report.failed += 1;
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Endpoint, ServicePort, ServicePortName};

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn flow(dst: &str, dport: u16, reply: &str, rport: u16) -> Flow {
        Flow {
            orig_src: ip("10.0.0.9"),
            orig_dst: ip(dst),
            orig_sport: 40000,
            orig_dport: dport,
            reply_src: ip(reply),
            reply_dst: ip("10.0.0.9"),
            reply_sport: rport,
            reply_dport: 40000,
        }
    }

    #[test]
    fn parses_conntrack_output() {
        let text = "udp      17 29 src=10.0.0.9 dst=172.30.0.10 sport=40000 dport=53 [UNREPLIED] src=10.180.0.5 dst=10.0.0.9 sport=53 dport=40000 mark=0 use=1\n\
                    tcp      6 431999 ESTABLISHED src=1.1.1.1 dst=2.2.2.2 sport=1 dport=2 src=2.2.2.2 dst=1.1.1.1 sport=2 dport=1 [ASSURED] mark=0 use=1\n\
                    ipv6     10 udp      17 20 src=fd00::9 dst=fd00::10 sport=1000 dport=53 src=fd00::5 dst=fd00::9 sport=53 dport=1000 mark=0 use=1\n\
                    conntrack v1.4.7 (conntrack-tools): 3 flow entries have been shown.";
        let flows = parse_flows(text);
        assert_eq!(flows.len(), 2);
        assert_eq!(flows[0], flow("172.30.0.10", 53, "10.180.0.5", 53));
        assert_eq!(flows[1].orig_dst, ip("fd00::10"));
        assert_eq!(
            parse_flows(&flows[0].to_conntrack_line()),
            vec![flows[0].clone()]
        );
    }

    #[test]
    fn stale_flows_are_those_to_non_serving_endpoints() {
        let name = ServicePortName::new("kube-system", "dns", "dns", Protocol::Udp);
        let mut svc = ServicePort::cluster_ip(name.clone(), ip("172.30.0.10"), 53);
        svc.node_port = Some(30053);
        let mut st = ProxyState::new();
        st.add_service(svc);
        let mut terminating = Endpoint::ready(ip("10.180.0.6"), 53);
        terminating.ready = false;
        terminating.terminating = true;
        st.set_endpoints(
            name,
            vec![Endpoint::ready(ip("10.180.0.5"), 53), terminating],
        );
        let flows = vec![
            flow("172.30.0.10", 53, "10.180.0.5", 53),  // serving: kept
            flow("172.30.0.10", 53, "10.180.0.6", 53),  // serving and terminating: kept
            flow("172.30.0.10", 53, "10.180.0.7", 53),  // removed endpoint: deleted
            flow("172.30.0.10", 53, "172.30.0.10", 53), // never DNATed: deleted
            flow("192.168.0.2", 30053, "10.180.0.7", 53), // NodePort to a removed endpoint
            flow("192.168.0.3", 30053, "10.180.0.7", 53), // not a node address: kept
            flow("172.30.0.11", 53, "10.180.0.7", 53),  // another IP: kept
        ];
        let stale = stale_flows(&st, &[ip("192.168.0.2")], &flows);
        assert_eq!(
            stale,
            vec![flows[2].clone(), flows[3].clone(), flows[4].clone()]
        );
    }

    #[test]
    fn a_service_without_endpoints_loses_all_its_flows() {
        let name = ServicePortName::new("ns", "statsd", "", Protocol::Udp);
        let mut st = ProxyState::new();
        st.add_service(ServicePort::cluster_ip(name, ip("172.30.0.20"), 8125));
        let flows = vec![flow("172.30.0.20", 8125, "172.30.0.20", 8125)];
        assert_eq!(stale_flows(&st, &[], &flows).len(), 1);
    }

    #[tokio::test]
    async fn cleanup_deletes_through_the_exec() {
        let name = ServicePortName::new("ns", "s", "", Protocol::Udp);
        let mut st = ProxyState::new();
        st.add_service(ServicePort::cluster_ip(name.clone(), ip("172.30.0.20"), 53));
        st.set_endpoints(name, vec![Endpoint::ready(ip("10.180.0.5"), 53)]);
        let keep = flow("172.30.0.20", 53, "10.180.0.5", 53);
        let gone = flow("172.30.0.20", 53, "10.180.0.9", 53);
        let fake = crate::exec::FakeConntrack::with_flows(vec![keep.clone(), gone]);
        let r = cleanup(&fake, IpFamily::V4, &st, &[]).await.unwrap();
        assert_eq!(
            r,
            CleanupReport {
                deleted: 1,
                failed: 0
            }
        );
        assert_eq!(fake.flows(), vec![keep]);
    }
}
