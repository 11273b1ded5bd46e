use super::*;

fn zone() -> Zone {
    Zone::new(&Records {
        services: vec![
            ServiceRecord {
                namespace: "shop".into(),
                name: "web".into(),
                ips: vec![Ipv4Addr::new(10, 255, 0, 1)],
            },
            ServiceRecord {
                namespace: "other".into(),
                name: "web".into(),
                ips: vec![Ipv4Addr::new(10, 255, 0, 2)],
            },
            ServiceRecord {
                namespace: "shop".into(),
                name: "headless".into(),
                ips: vec![],
            },
        ],
        pods: [(Ipv4Addr::new(10, 1, 0, 5), "shop".to_owned())].into(),
    })
}

const POD: Option<Ipv4Addr> = Some(Ipv4Addr::new(10, 1, 0, 5));

fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut q = vec![];
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&0x0100u16.to_be_bytes()); // RD
    q.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    push_name(&mut q, name);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes());
    q
}

/// (rcode, AA, answers, authority count) of a response.
fn decode(r: &[u8]) -> (u8, bool, Vec<Ipv4Addr>, u16) {
    let flags = u16::from_be_bytes([r[2], r[3]]);
    assert!(flags & 0x8000 != 0, "QR set");
    assert_eq!(flags & 0x0100, 0x0100, "RD copied");
    assert_eq!(flags & 0x0080, 0, "no RA");
    let an = u16::from_be_bytes([r[6], r[7]]);
    let ns = u16::from_be_bytes([r[8], r[9]]);
    let q = parse_query(&{
        let mut copy = r.to_vec();
        copy[2] &= 0x7f; // parse the question with the query parser
        copy[6..12].fill(0);
        copy
    })
    .unwrap();
    let mut pos = q.question_end;
    let mut ips = vec![];
    for _ in 0..an {
        assert_eq!(&r[pos..pos + 2], &[0xc0, 0x0c], "name by pointer");
        assert_eq!(u16::from_be_bytes([r[pos + 2], r[pos + 3]]), TYPE_A);
        assert_eq!(u16::from_be_bytes([r[pos + 10], r[pos + 11]]), 4);
        ips.push(Ipv4Addr::new(
            r[pos + 12],
            r[pos + 13],
            r[pos + 14],
            r[pos + 15],
        ));
        pos += 16;
    }
    if ns == 1 {
        // The SOA record ends the packet exactly.
        let mut p = pos;
        while r[p] != 0 {
            p += usize::from(r[p]) + 1;
        }
        let rdlen = usize::from(u16::from_be_bytes([r[p + 9], r[p + 10]]));
        assert_eq!(u16::from_be_bytes([r[p + 1], r[p + 2]]), TYPE_SOA);
        assert_eq!(p + 11 + rdlen, r.len(), "SOA rdata length");
    } else {
        assert_eq!(pos, r.len());
    }
    ((flags & 0xf) as u8, flags & 0x0400 != 0, ips, ns)
}

#[test]
fn every_service_name_form_resolves_to_the_vip_relative_to_the_pods_namespace() {
    let z = zone();
    let web = Lookup::Found(vec![Ipv4Addr::new(10, 255, 0, 1)]);
    let other = Lookup::Found(vec![Ipv4Addr::new(10, 255, 0, 2)]);
    assert_eq!(z.lookup("web", POD), web);
    assert_eq!(z.lookup("web.shop", POD), web);
    assert_eq!(z.lookup("web.shop.svc", None), web);
    assert_eq!(z.lookup("WEB.Shop.svc.cluster.local.", None), web);
    assert_eq!(z.lookup("web.other", POD), other, "explicit namespace wins");
    assert_eq!(z.lookup("web.other.svc.cluster.local", POD), other);
    // A bare name needs the asker's namespace.
    assert_eq!(z.lookup("web", None), Lookup::NotOurs);
    assert_eq!(z.lookup("nope", POD), Lookup::NxDomain);
}

#[test]
fn missing_names_are_nxdomain_empty_non_terminals_nodata_and_foreign_names_refused() {
    let z = zone();
    assert_eq!(
        z.lookup("nope.shop.svc.cluster.local", POD),
        Lookup::NxDomain
    );
    assert_eq!(
        z.lookup("web.nons.svc.cluster.local", POD),
        Lookup::NxDomain
    );
    assert_eq!(
        z.lookup("a.web.shop.svc.cluster.local", POD),
        Lookup::NxDomain
    );
    assert_eq!(z.lookup("foo.cluster.local", POD), Lookup::NxDomain);
    assert_eq!(z.lookup("shop.svc.cluster.local", POD), Lookup::NoData);
    assert_eq!(z.lookup("svc.cluster.local", POD), Lookup::NoData);
    assert_eq!(z.lookup("cluster.local", POD), Lookup::NoData);
    assert_eq!(z.lookup("nons.svc.cluster.local", POD), Lookup::NxDomain);
    assert_eq!(z.lookup("example.com", POD), Lookup::NotOurs);
    assert_eq!(z.lookup("www.example.com", POD), Lookup::NotOurs);
}

#[test]
fn a_queries_get_the_vip_and_aaaa_gets_nodata_on_the_wire() {
    let z = zone();
    let r = respond(&query(7, "web.shop.svc.cluster.local", TYPE_A), &z, None).unwrap();
    assert_eq!(u16::from_be_bytes([r[0], r[1]]), 7, "id echoed");
    assert_eq!(decode(&r), (0, true, vec![Ipv4Addr::new(10, 255, 0, 1)], 0));
    let r = respond(&query(8, "web.shop.svc.cluster.local", 28), &z, None).unwrap();
    assert_eq!(decode(&r), (0, true, vec![], 1), "AAAA: NODATA with SOA");
    let r = respond(&query(9, "nope.shop.svc.cluster.local", TYPE_A), &z, None).unwrap();
    assert_eq!(decode(&r), (3, true, vec![], 1), "NXDOMAIN with SOA");
    let r = respond(&query(9, "nope.shop.svc.cluster.local", 28), &z, None).unwrap();
    assert_eq!(decode(&r).0, 3, "NXDOMAIN whatever the type");
    let r = respond(
        &query(10, "headless.shop.svc.cluster.local", TYPE_A),
        &z,
        None,
    )
    .unwrap();
    assert_eq!(
        decode(&r),
        (0, true, vec![], 1),
        "headless without endpoints: NODATA"
    );
    let r = respond(&query(11, "example.com", TYPE_A), &z, None).unwrap();
    assert_eq!(
        decode(&r),
        (5, false, vec![], 0),
        "REFUSED, not authoritative"
    );
    let r = respond(&query(12, "web", TYPE_A), &z, POD).unwrap();
    assert_eq!(decode(&r).2, vec![Ipv4Addr::new(10, 255, 0, 1)]);
}

#[test]
fn malformed_packets_are_dropped_or_formerr_never_a_panic() {
    let z = zone();
    assert_eq!(respond(&[1, 2, 3], &z, None), None, "shorter than a header");
    let mut resp = query(1, "web", TYPE_A);
    resp[2] |= 0x80;
    assert_eq!(respond(&resp, &z, None), None, "responses are dropped");
    let q = query(5, "web.shop.svc.cluster.local", TYPE_A);
    for cut in 12..q.len() {
        let r = respond(&q[..cut], &z, None).unwrap();
        assert_eq!(r.len(), 12);
        assert_eq!(r[3] & 0xf, 1, "truncated at {cut}: FORMERR");
    }
    let mut two = q.clone();
    two[5] = 2;
    assert_eq!(respond(&two, &z, None).unwrap()[3] & 0xf, 1);
    let mut notify = q.clone();
    notify[2] |= 4 << 3;
    assert_eq!(respond(&notify, &z, None).unwrap()[3] & 0xf, 4, "NOTIMP");
    let mut pointer = q[..12].to_vec();
    pointer.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1]);
    assert_eq!(respond(&pointer, &z, None).unwrap()[3] & 0xf, 1);
    // Random bytes never panic.
    let mut seed = 0x1234_5678u32;
    for _ in 0..2000 {
        let len = (seed % 64) as usize;
        let pkt: Vec<u8> = (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                seed as u8
            })
            .collect();
        let _ = respond(&pkt, &z, POD);
    }
}
