//! Property tests for CNI results: parsing never panics, serialization round-trips, and
//! conversions keep what the target version can express.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use cni_exec::config::KNOWN_VERSIONS;
use cni_exec::result::{Dns, Interface, IpConfig, Result100, Route, VersionedResult};
use ipnetwork::IpNetwork;
use proptest::prelude::*;

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<u32>().prop_map(|n| IpAddr::V4(Ipv4Addr::from(n))),
        any::<u128>().prop_map(|n| IpAddr::V6(Ipv6Addr::from(n))),
    ]
}

/// IPv6 addresses that are not IPv4-mapped, so the family is unambiguous in every version.
fn net() -> impl Strategy<Value = IpNetwork> {
    prop_oneof![
        (any::<u32>(), 0u8..=32)
            .prop_map(|(n, p)| IpNetwork::new(Ipv4Addr::from(n).into(), p).unwrap()),
        (any::<u128>(), 0u8..=128).prop_map(|(n, p)| {
            let a = Ipv6Addr::from(n | (1u128 << 127));
            IpNetwork::new(a.into(), p).unwrap()
        }),
    ]
}

fn same_family(a: IpNetwork, b: Option<IpAddr>) -> Option<IpAddr> {
    b.filter(|g| g.is_ipv4() == a.is_ipv4())
}

fn result100() -> impl Strategy<Value = Result100> {
    let iface = (
        "[a-z]{1,15}",
        "[0-9a-f:]{0,17}",
        proptest::option::of(1u32..65536),
    )
        .prop_map(|(name, mac, mtu)| Interface {
            name,
            mac,
            mtu,
            ..Interface::default()
        });
    let route = (
        net(),
        proptest::option::of(ip()),
        proptest::option::of(0u32..300),
    )
        .prop_map(|(dst, gw, table)| {
            let mut r = Route::new(dst, same_family(dst, gw));
            r.table = table;
            r
        });
    (
        prop::collection::vec(iface, 0..3),
        prop::collection::vec((net(), proptest::option::of(ip()), any::<usize>()), 0..4),
        prop::collection::vec(route, 0..4),
        prop::collection::vec("[0-9.]{1,15}", 0..2),
        prop::sample::select(vec!["1.0.0", "1.1.0"]),
    )
        .prop_map(|(interfaces, ips, routes, nameservers, version)| {
            let count = interfaces.len();
            let ips = ips
                .into_iter()
                .map(|(address, gw, idx)| IpConfig {
                    interface: (count > 0).then(|| idx % count),
                    address,
                    gateway: same_family(address, gw),
                })
                .collect();
            Result100 {
                cni_version: version.to_owned(),
                interfaces,
                ips,
                routes,
                dns: Dns {
                    nameservers,
                    ..Dns::default()
                },
            }
        })
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::{Value, json};
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        prop::sample::select(vec![
            "",
            "1.0.0",
            "0.4.0",
            "0.2.0",
            "4",
            "6",
            "10.0.0.1/24",
            "fd00::1/64",
            "10.0.0.1",
            "x",
        ])
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        let keys = prop::sample::select(vec![
            "cniVersion",
            "interfaces",
            "ips",
            "routes",
            "dns",
            "ip4",
            "ip6",
            "ip",
            "address",
            "gateway",
            "gw",
            "dst",
            "interface",
            "version",
            "name",
            "mtu",
            "nameservers",
        ]);
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(keys, inner, 0..6).prop_map(|m| json!(m)),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn parsing_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = VersionedResult::from_slice(&bytes);
        if let Ok(r) = VersionedResult::from_plugin_output(&bytes, "1.0.0") {
            let _ = r.validate();
            for v in KNOWN_VERSIONS {
                let _ = r.convert_to(v);
            }
        }
    }

    #[test]
    fn parsing_and_converting_shaped_json_never_panics(value in json_value()) {
        let bytes = serde_json::to_vec(&value).unwrap();
        for config_version in ["", "0.2.0", "0.3.1", "1.1.0", "7.0.0"] {
            if let Ok(r) = VersionedResult::from_plugin_output(&bytes, config_version) {
                let _ = r.validate();
                for v in KNOWN_VERSIONS.iter().chain(&["", "0.5.0", "x"]) {
                    if let Ok(c) = r.convert_to(v) {
                        // Whatever converts also serializes and parses back to itself.
                        let again = VersionedResult::from_slice(&c.to_vec()).unwrap();
                        prop_assert_eq!(again, c);
                    }
                }
            }
        }
    }

    #[test]
    fn round_trips_are_stable(r in result100(), target in prop::sample::select(KNOWN_VERSIONS.to_vec())) {
        let r = VersionedResult::from(r);
        r.validate().unwrap();
        let once = VersionedResult::from_slice(&r.to_vec()).unwrap();
        prop_assert_eq!(&once, &r);
        if let Ok(c) = r.convert_to(target) {
            let bytes = c.to_vec();
            let parsed = VersionedResult::from_slice(&bytes).unwrap();
            prop_assert_eq!(parsed.to_vec(), bytes);
            prop_assert_eq!(parsed.cni_version(), target);
        }
    }

    #[test]
    fn conversions_preserve_what_the_target_can_express(r in result100()) {
        let original = r.clone();
        let r = VersionedResult::from(r);

        // 1.x -> 0.4.0 -> 1.x keeps addresses, gateways, interface indexes, routes and DNS.
        let via040 = r.convert_to("0.4.0").unwrap();
        via040.validate().unwrap();
        let back = via040.to_current().unwrap();
        prop_assert_eq!(back.ips, original.ips.clone());
        prop_assert_eq!(back.routes, original.routes.clone());
        prop_assert_eq!(back.dns, original.dns.clone());
        let names: Vec<_> = back.interfaces.iter().map(|i| i.name.clone()).collect();
        let want: Vec<_> = original.interfaces.iter().map(|i| i.name.clone()).collect();
        prop_assert_eq!(names, want);

        // 1.x -> 0.2.0 keeps the first address of each family, its gateway, and the
        // routes (destination and next hop) of each family that has an address.
        let first4 = original.ips.iter().find(|i| i.address.is_ipv4());
        let first6 = original.ips.iter().find(|i| i.address.is_ipv6());
        match r.convert_to("0.2.0") {
            Err(_) => prop_assert!(first4.is_none() && first6.is_none()),
            Ok(old) => {
                let up = old.to_current().unwrap();
                let mut want_ips: Vec<(IpNetwork, Option<IpAddr>)> = Vec::new();
                want_ips.extend(first4.map(|i| (i.address, i.gateway)));
                want_ips.extend(first6.map(|i| (i.address, i.gateway)));
                let got_ips: Vec<_> = up.ips.iter().map(|i| (i.address, i.gateway)).collect();
                prop_assert_eq!(got_ips, want_ips);
                let route_pairs = |four: bool| -> Vec<(IpNetwork, Option<IpAddr>)> {
                    original.routes.iter()
                        .filter(|rt| rt.dst.is_ipv4() == four)
                        .map(|rt| (rt.dst, rt.gw))
                        .collect()
                };
                let mut want_routes = Vec::new();
                if first4.is_some() { want_routes.extend(route_pairs(true)); }
                if first6.is_some() { want_routes.extend(route_pairs(false)); }
                let got_routes: Vec<_> = up.routes.iter().map(|rt| (rt.dst, rt.gw)).collect();
                prop_assert_eq!(got_routes, want_routes);
                prop_assert_eq!(up.dns, original.dns);
            }
        }
    }
}
