use std::net::SocketAddr;

use super::*;

/// Builds an Ethernet + IPv4 + TCP frame (checksums zero: the parser ignores them).
fn frame(
    src: SocketAddr,
    dst: SocketAddr,
    seq: u32,
    syn: bool,
    payload: &[u8],
    pad: usize,
) -> Vec<u8> {
    let (SocketAddr::V4(s), SocketAddr::V4(d)) = (src, dst) else {
        panic!("v4 only")
    };
    let mut f = vec![0u8; 12];
    f.extend([0x08, 0x00]);
    let total = (20 + 20 + payload.len()) as u16;
    f.extend([
        0x45,
        0,
        (total >> 8) as u8,
        total as u8,
        0,
        0,
        0,
        0,
        64,
        6,
        0,
        0,
    ]);
    f.extend(s.ip().octets());
    f.extend(d.ip().octets());
    f.extend(s.port().to_be_bytes());
    f.extend(d.port().to_be_bytes());
    f.extend(seq.to_be_bytes());
    f.extend([
        0,
        0,
        0,
        0,
        0x50,
        if syn { 0x02 } else { 0x18 },
        0xff,
        0xff,
        0,
        0,
        0,
        0,
    ]);
    f.extend(payload);
    f.extend(std::iter::repeat_n(0xAAu8, pad));
    f
}

fn pcap_file(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend(0xa1b2_c3d4u32.to_le_bytes());
    out.extend(2u16.to_le_bytes());
    out.extend(4u16.to_le_bytes());
    out.extend([0u8; 8]);
    out.extend(65535u32.to_le_bytes());
    out.extend(1u32.to_le_bytes());
    for f in frames {
        out.extend([0u8; 8]);
        out.extend((f.len() as u32).to_le_bytes());
        out.extend((f.len() as u32).to_le_bytes());
        out.extend(f);
    }
    out
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("valid socket address")
}

#[test]
fn reassembles_out_of_order_and_retransmitted_segments() {
    let (a, b) = (addr("10.1.0.2:40000"), addr("10.2.0.2:8080"));
    let frames = [
        frame(a, b, 999, true, b"", 0),
        frame(a, b, 1005, false, b"-MARK", 6), // arrives first, padded like short Ethernet frames
        frame(a, b, 1000, false, b"SECRE", 0),
        frame(a, b, 1000, false, b"SECRE", 0), // retransmission
        frame(b, a, 5000, false, b"reply", 0),
    ];
    let segments = parse_pcap(&pcap_file(&frames)).expect("parses");
    assert_eq!(segments.len(), 5);
    assert_eq!(segments[1].payload, b"-MARK", "padding must be trimmed");
    let summary = CaptureSummary::from_segments(&segments);
    assert!(summary.contains(b"SECRE-MARK"));
    assert!(!summary.contains(b"MARKSECRE"));
    assert!(
        !summary.contains(b"SECRE-MARKreply"),
        "directions must not be mixed"
    );
    assert_eq!(summary.ports(), [8080, 40000].into_iter().collect());
    assert_eq!(
        summary.stream(&FlowKey { src: b, dst: a }),
        Some(&b"reply"[..])
    );
}

#[test]
fn rejects_non_pcap_input() {
    assert!(matches!(
        parse_pcap(b"\x0a\x0d\x0d\x0a-pcapng"),
        Err(PcapError::Magic(_))
    ));
    assert!(matches!(parse_pcap(b"ab"), Err(PcapError::Truncated(0))));
    let mut bad_link = pcap_file(&[]);
    bad_link[20] = 200;
    assert!(matches!(
        parse_pcap(&bad_link),
        Err(PcapError::LinkType(200))
    ));
}

#[test]
fn truncated_record_is_an_error() {
    let mut file = pcap_file(&[frame(
        addr("1.1.1.1:1"),
        addr("2.2.2.2:2"),
        1,
        false,
        b"x",
        0,
    )]);
    file.truncate(file.len() - 3);
    assert!(matches!(parse_pcap(&file), Err(PcapError::Truncated(_))));
}
