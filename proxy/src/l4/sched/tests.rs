//! Tests for the IPVS schedulers: each scheduler's defining behaviour against the kernel's rules,
//! then properties over arbitrary server lists.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use proptest::prelude::*;

use super::maglev::{hsiphash_u32, sipround};
use super::*;

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);

/// Server `i` at 10.1.x.y:80.
fn server(i: usize) -> SocketAddr {
    let [_, _, hi, lo] = (i as u32).to_be_bytes();
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 1, hi, lo)), 80)
}

fn dests(weights: &[u32]) -> Vec<Dest> {
    weights
        .iter()
        .enumerate()
        .map(|(i, &w)| Dest::new(server(i), w))
        .collect()
}

/// Client `i` at 172.16.x.y:40000, connecting to 192.0.2.1:80.
fn client(i: usize) -> Packet {
    let [_, _, hi, lo] = (i as u32).to_be_bytes();
    Packet {
        client: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(172, 16, hi, lo)), 40_000),
        destination: "192.0.2.1:80".parse().unwrap(),
    }
}

/// A connection to destination `i` at 198.51.x.y:80 from one client.
fn to_destination(i: usize) -> Packet {
    let [_, _, hi, lo] = (i as u32).to_be_bytes();
    Packet {
        client: "203.0.113.9:40000".parse().unwrap(),
        destination: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, hi, lo)), 80),
    }
}

fn scheduler(kind: Kind) -> Scheduler {
    Scheduler::new(kind, Options::default()).unwrap()
}

fn with_options(kind: Kind, options: Options) -> Scheduler {
    Scheduler::new(kind, options).unwrap()
}

/// `n` picks for the same packet at time zero.
fn picks(s: &mut Scheduler, dests: &[Dest], n: usize) -> Vec<Option<usize>> {
    (0..n)
        .map(|_| s.schedule(dests, &client(0), Duration::ZERO))
        .collect()
}

fn counts(picks: &[Option<usize>], servers: usize) -> Vec<usize> {
    let mut counts = vec![0; servers];
    for p in picks.iter().flatten() {
        counts[*p] += 1;
    }
    counts
}

/// Each client's pick, as a map.
fn mapping(s: &mut Scheduler, dests: &[Dest], clients: usize) -> Vec<Option<SocketAddr>> {
    (0..clients)
        .map(|c| {
            s.schedule(dests, &client(c), Duration::ZERO)
                .map(|i| dests[i].addr)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Names, options, shared hashes

#[test]
fn kind_parses_every_ipvsadm_name_and_displays_it_back() {
    for kind in Kind::ALL {
        assert_eq!(kind.to_string().parse::<Kind>().unwrap(), kind);
    }
    assert_eq!(" WLC ".parse::<Kind>().unwrap(), Kind::Wlc);
    assert_eq!("lblcr".parse::<Kind>().unwrap(), Kind::Lblcr);
}

#[test]
fn unknown_kind_lists_the_allowed_names() {
    let err = "fo".parse::<Kind>().unwrap_err();
    assert_eq!(err, SchedError::UnknownKind { name: "fo".into() });
    let message = err.to_string();
    for kind in Kind::ALL {
        assert!(message.contains(kind.name()), "{message}");
    }
}

#[test]
fn mh_table_size_must_be_a_prime_in_range() {
    for size in [0, 1, 4, 65_536, 65_535, MH_TABLE_SIZE_MAX, 1_048_583] {
        let options = Options {
            mh_table_size: size,
            ..Options::default()
        };
        assert_eq!(
            Scheduler::new(Kind::Mh, options).unwrap_err(),
            SchedError::MhTableSize { size },
            "{size}"
        );
        // Only mh reads it.
        assert!(Scheduler::new(Kind::Sh, options).is_ok());
    }
    for size in [2, 251, 4093, 65_521, 65_537, 131_071, 1_048_573] {
        let options = Options {
            mh_table_size: size,
            ..Options::default()
        };
        assert!(Scheduler::new(Kind::Mh, options).is_ok(), "{size}");
    }
}

#[test]
fn hash_32_and_address_fold_match_the_kernel() {
    // (val * 0x61C88647) >> (32 - bits), as include/linux/hash.h.
    assert_eq!(hash_32(1, 8), 0x61);
    assert_eq!(hash_32(0x0a00_0001, 8), 39);
    assert_eq!(hash_32(0xc0a8_0001, 10), 769);
    assert_eq!(addr_fold("10.0.0.1".parse().unwrap()), 0x0a00_0001);
    // 0x20010db8 ^ 0 ^ 0 ^ 0x00000001.
    let v6: Ipv6Addr = "2001:db8::1".parse().unwrap();
    assert_eq!(addr_fold(IpAddr::V6(v6)), 0x2001_0db9);
}

#[test]
fn sipround_matches_the_siphash_reference() {
    // SipHash-2-4 of the empty message under key 00 01 .. 0f (the paper's first test vector),
    // built from the same round function.
    let (k0, k1) = (0x0706_0504_0302_0100_u64, 0x0f0e_0d0c_0b0a_0908_u64);
    let mut v = [
        0x736f_6d65_7073_6575 ^ k0,
        0x646f_7261_6e64_6f6d ^ k1,
        0x6c79_6765_6e65_7261 ^ k0,
        0x7465_6462_7974_6573 ^ k1,
    ];
    let b = 0_u64;
    v[3] ^= b;
    sipround(&mut v);
    sipround(&mut v);
    v[0] ^= b;
    v[2] ^= 0xff;
    for _ in 0..4 {
        sipround(&mut v);
    }
    assert_eq!(v[0] ^ v[1] ^ v[2] ^ v[3], 0x726f_db47_dd0e_0e31);
}

#[test]
fn hsiphash_is_siphash_1_3_truncated() {
    // CPython's bytes hash is SipHash-1-3; with PYTHONHASHSEED=0 its key is zero:
    // hash(struct.pack('<I', v)) & 0xffffffff.
    let vectors = [
        (0x0000_0000, 0x9ac4_8af0),
        (0x0000_0001, 0xc37b_7090),
        (0x0a00_0001, 0x3d66_7eda),
        (0xdead_beef, 0x84fb_8253),
        (0x9e37_79b1, 0x0b7b_52d8),
    ];
    for (v, expected) in vectors {
        assert_eq!(hsiphash_u32(v, &[0, 0]), expected, "{v:#x}");
    }
}

#[test]
fn every_scheduler_answers_none_without_servers_or_weights() {
    for kind in Kind::ALL {
        let mut s = scheduler(kind);
        assert_eq!(s.schedule(&[], &client(1), Duration::ZERO), None, "{kind}");
        let zero = dests(&[0, 0, 0]);
        s.update(&zero);
        for c in 0..50 {
            assert_eq!(
                s.schedule(&zero, &client(c), Duration::ZERO),
                None,
                "{kind}"
            );
        }
    }
}

#[test]
fn schedule_rebuilds_when_the_server_count_changed_without_update() {
    for kind in Kind::ALL {
        let mut s = scheduler(kind);
        let three = dests(&[1, 1, 1]);
        s.update(&three);
        let two = dests(&[0, 1]);
        for c in 0..100 {
            let pick = s.schedule(&two, &client(c), Duration::ZERO);
            assert!(pick.is_none() || pick == Some(1), "{kind}: {pick:?}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// rr

#[test]
fn rr_cycles_over_servers_with_weight_and_skips_weight_zero() {
    let mut s = scheduler(Kind::Rr);
    let d = dests(&[1, 0, 5, 1]);
    s.update(&d);
    let got = picks(&mut s, &d, 6);
    assert_eq!(got, [0, 2, 3, 0, 2, 3].map(Some));
}

#[test]
fn rr_skips_overloaded_servers() {
    let mut s = scheduler(Kind::Rr);
    let mut d = dests(&[1, 1, 1]);
    d[1].overloaded = true;
    s.update(&d);
    assert_eq!(picks(&mut s, &d, 4), [0, 2, 0, 2].map(Some));
    for dest in &mut d {
        dest.overloaded = true;
    }
    assert_eq!(picks(&mut s, &d, 2), [None, None]);
}

#[test]
fn rr_resumes_after_a_removed_server_as_the_kernel_does() {
    // A B C D; after picking A and B, B is deleted: the cursor steps back to A, so C is next.
    let mut s = scheduler(Kind::Rr);
    let all = dests(&[1, 1, 1, 1]);
    s.update(&all);
    assert_eq!(picks(&mut s, &all, 2), [Some(0), Some(1)]);
    let without_b = vec![all[0], all[2], all[3]];
    s.update(&without_b);
    assert_eq!(picks(&mut s, &without_b, 3), [1, 2, 0].map(Some));

    // The step back is to the nearest earlier server: A B C D E with the cursor on C; C goes,
    // the cursor moves to B, and D is next (not B, as stepping back to the head's first would).
    let mut s = scheduler(Kind::Rr);
    let five = dests(&[1; 5]);
    s.update(&five);
    assert_eq!(picks(&mut s, &five, 3), [0, 1, 2].map(Some));
    let without_c = vec![five[0], five[1], five[3], five[4]];
    s.update(&without_c);
    assert_eq!(picks(&mut s, &without_c, 1), [Some(2)]);

    // Deleting the first server while the cursor is on it goes back to the head.
    let mut s = scheduler(Kind::Rr);
    s.update(&all);
    assert_eq!(picks(&mut s, &all, 1), [Some(0)]);
    let without_a = all[1..].to_vec();
    s.update(&without_a);
    assert_eq!(picks(&mut s, &without_a, 1), [Some(0)]);

    // Adding a server in front keeps the cursor on the same server.
    let mut s = scheduler(Kind::Rr);
    s.update(&all[..2]);
    assert_eq!(picks(&mut s, &all[..2], 1), [Some(0)]);
    let added = vec![all[3], all[0], all[1]];
    s.update(&added);
    assert_eq!(picks(&mut s, &added, 3), [2, 0, 1].map(Some));
}

// ---------------------------------------------------------------------------------------------
// wrr

#[test]
fn wrr_gives_exactly_3_to_1_in_the_kernel_order() {
    let mut s = scheduler(Kind::Wrr);
    let d = dests(&[3, 1]);
    s.update(&d);
    let got = picks(&mut s, &d, 400);
    assert_eq!(counts(&got, 2), [300, 100]);
    assert_eq!(got[..8], [0, 0, 0, 1, 0, 0, 0, 1].map(Some));
}

#[test]
fn wrr_interleaves_4_3_2_as_the_kernel() {
    // cw = 4: A; cw = 3: A B; cw = 2: A B C; cw = 1: A B C; then back to cw = 4.
    let mut s = scheduler(Kind::Wrr);
    let d = dests(&[4, 3, 2]);
    s.update(&d);
    let got = picks(&mut s, &d, 18);
    let cycle = [0, 0, 1, 0, 1, 2, 0, 1, 2];
    let expected: Vec<_> = cycle.iter().chain(&cycle).map(|&i| Some(i)).collect();
    assert_eq!(got, expected);
}

#[test]
fn wrr_steps_the_current_weight_by_the_gcd() {
    // gcd 2, mw = 6 - 1 = 5: cw = 5: A; 3: A B; 1: A B C.
    let mut s = scheduler(Kind::Wrr);
    let d = dests(&[6, 4, 2]);
    s.update(&d);
    assert_eq!(
        picks(&mut s, &d, 12),
        [0, 0, 1, 0, 1, 2, 0, 0, 1, 0, 1, 2].map(Some)
    );
}

#[test]
fn wrr_skips_weight_zero_and_overloaded_servers() {
    let mut s = scheduler(Kind::Wrr);
    let mut d = dests(&[2, 0, 1]);
    d[2].overloaded = true;
    s.update(&d);
    assert_eq!(picks(&mut s, &d, 3), [Some(0); 3]);
    d[0].overloaded = true;
    assert_eq!(picks(&mut s, &d, 2), [None, None]);
}

#[test]
fn wrr_with_a_huge_overloaded_weight_answers_at_once() {
    // The kernel walks cw down from 2^31 one step per pass; here that is skipped.
    for heavy in [i32::MAX as u32, u32::MAX] {
        let mut s = scheduler(Kind::Wrr);
        let mut d = dests(&[heavy, 1]);
        d[0].overloaded = true;
        s.update(&d);
        assert_eq!(picks(&mut s, &d, 3), [Some(1); 3]);
        d[1].overloaded = true;
        assert_eq!(picks(&mut s, &d, 2), [None, None]);
    }
}

/// `ip_vs_wrr.c` transcribed pass by pass, without skipping: the reference for the property
/// test below.
#[derive(Debug, Default)]
struct KernelWrr {
    cl: Option<usize>,
    cw: i64,
    mw: i64,
    di: i64,
}

impl KernelWrr {
    fn update(&mut self, d: &[Dest]) {
        fn gcd(a: i64, b: i64) -> i64 {
            if b == 0 { a } else { gcd(b, a % b) }
        }
        self.cl = None;
        let mut g = 0;
        for w in d.iter().map(|d| i64::from(d.weight)).filter(|&w| w > 0) {
            g = if g > 0 { gcd(w, g) } else { w };
        }
        self.di = if g > 0 { g } else { 1 };
        let max = d.iter().map(|d| i64::from(d.weight)).max().unwrap_or(0);
        self.mw = max - (self.di - 1);
        if self.cw > self.mw || self.cw == 0 {
            self.cw = self.mw;
        } else if self.di > 1 {
            self.cw = (self.cw / self.di) * self.di + 1;
        }
    }

    fn schedule(&mut self, d: &[Dest]) -> Option<usize> {
        if self.mw == 0 {
            return None;
        }
        let last = self.cl;
        let mut pos = last;
        let (mut stop, mut last_pass, mut restarted) = (None, false, false);
        loop {
            for (i, dest) in d.iter().enumerate().skip(pos.map_or(0, |p| p + 1)) {
                if !dest.overloaded && i64::from(dest.weight) >= self.cw {
                    self.cl = Some(i);
                    return Some(i);
                }
                if stop == Some(i) {
                    self.cl = Some(i);
                    return None;
                }
            }
            pos = None;
            self.cw -= self.di;
            if self.cw <= 0 {
                self.cw = self.mw;
                if last_pass || last.is_none() {
                    self.cl = None;
                    return None;
                }
                restarted = true;
            }
            last_pass = self.cw <= self.di;
            if last_pass && restarted && last.is_some() {
                stop = last;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// lc, wlc, sed, nq

fn loaded(weight: u32, active: u32, inactive: u32) -> (u32, u32, u32) {
    (weight, active, inactive)
}

fn servers_with(load: &[(u32, u32, u32)]) -> Vec<Dest> {
    load.iter()
        .enumerate()
        .map(|(i, &(weight, active, inactive))| Dest {
            active,
            inactive,
            ..Dest::new(server(i), weight)
        })
        .collect()
}

fn pick_once(kind: Kind, d: &[Dest]) -> Option<usize> {
    scheduler(kind).schedule(d, &client(0), Duration::ZERO)
}

#[test]
fn lc_counts_an_active_connection_as_256_inactive_ones() {
    // 1 * 256 + 0 > 0 * 256 + 255.
    let d = servers_with(&[loaded(1, 1, 0), loaded(1, 0, 255)]);
    assert_eq!(pick_once(Kind::Lc, &d), Some(1));
    // 256 == 256: the earlier server wins the tie.
    let d = servers_with(&[loaded(1, 1, 0), loaded(1, 0, 256)]);
    assert_eq!(pick_once(Kind::Lc, &d), Some(0));
    // Weight does not scale lc, it only excludes 0.
    let d = servers_with(&[loaded(100, 2, 0), loaded(1, 1, 0), loaded(0, 0, 0)]);
    assert_eq!(pick_once(Kind::Lc, &d), Some(1));
    let mut d = servers_with(&[loaded(1, 5, 0), loaded(1, 0, 0)]);
    d[1].overloaded = true;
    assert_eq!(pick_once(Kind::Lc, &d), Some(0));
}

#[test]
fn wlc_compares_overhead_per_weight_by_cross_multiplication() {
    // 256 / 1 against 512 / 3: the heavier-weighted server is less loaded.
    let d = servers_with(&[loaded(1, 1, 0), loaded(3, 2, 0)]);
    assert_eq!(pick_once(Kind::Wlc, &d), Some(1));
    assert_eq!(pick_once(Kind::Lc, &d), Some(0));
    // 256 * 2 == 512 * 1: a tie stays with the first.
    let d = servers_with(&[loaded(1, 1, 0), loaded(2, 2, 0)]);
    assert_eq!(pick_once(Kind::Wlc, &d), Some(0));
    // Weight 0 never wins, even idle; overloaded servers are skipped.
    let mut d = servers_with(&[loaded(1, 9, 9), loaded(0, 0, 0), loaded(5, 0, 0)]);
    d[2].overloaded = true;
    assert_eq!(pick_once(Kind::Wlc, &d), Some(0));
}

#[test]
fn sed_counts_the_incoming_job_and_ignores_inactive() {
    // wlc: 0 / 1 beats 256 / 10. sed: (0 + 1) / 1 loses to (1 + 1) / 10.
    let d = servers_with(&[loaded(1, 0, 0), loaded(10, 1, 0)]);
    assert_eq!(pick_once(Kind::Wlc, &d), Some(0));
    assert_eq!(pick_once(Kind::Sed, &d), Some(1));
    // Inactive connections do not count.
    let d = servers_with(&[loaded(1, 1, 1000), loaded(1, 1, 0)]);
    assert_eq!(pick_once(Kind::Sed, &d), Some(0));
}

#[test]
fn nq_sends_to_an_idle_server_before_a_faster_one() {
    // sed prefers the fast server with one connection; nq the idle slow one.
    let d = servers_with(&[loaded(10, 1, 0), loaded(1, 0, 50)]);
    assert_eq!(pick_once(Kind::Sed, &d), Some(0));
    assert_eq!(pick_once(Kind::Nq, &d), Some(1));
    // The first idle server in list order, skipping weight 0 and overloaded ones.
    let mut d = servers_with(&[
        loaded(0, 0, 0),
        loaded(5, 0, 0),
        loaded(5, 3, 0),
        loaded(5, 0, 0),
    ]);
    d[1].overloaded = true;
    assert_eq!(pick_once(Kind::Nq, &d), Some(3));
    // Nobody idle: sed's choice.
    let d = servers_with(&[loaded(1, 1, 0), loaded(10, 1, 0), loaded(10, 2, 0)]);
    assert_eq!(pick_once(Kind::Nq, &d), Some(1));
}

// ---------------------------------------------------------------------------------------------
// dh

fn dh_bucket(destination: SocketAddr) -> usize {
    hash_32(addr_fold(destination.ip()), 8) as usize
}

#[test]
fn dh_maps_each_destination_to_one_server_by_its_bucket() {
    let mut s = scheduler(Kind::Dh);
    let d = dests(&[1, 1, 1, 1]);
    s.update(&d);
    let mut spread = [0; 4];
    for i in 0..2000 {
        let packet = to_destination(i);
        let pick = s.schedule(&d, &packet, Duration::ZERO).unwrap();
        // Buckets are dealt one server at a time, whatever the weights.
        assert_eq!(pick, dh_bucket(packet.destination) % 4);
        // The same destination from another client goes to the same server.
        let other = Packet {
            client: "203.0.113.77:1234".parse().unwrap(),
            ..packet
        };
        assert_eq!(s.schedule(&d, &other, Duration::ZERO), Some(pick));
        spread[pick] += 1;
    }
    assert!(spread.iter().all(|&n| n > 400), "{spread:?}");
}

#[test]
fn dh_has_no_fallback_for_an_unavailable_server() {
    let options = Options {
        fallback: true,
        ..Options::default()
    };
    let mut s = with_options(Kind::Dh, options);
    let mut d = dests(&[1, 0, 1]);
    d[2].overloaded = true;
    s.update(&d);
    for i in 0..500 {
        let packet = to_destination(i);
        let expected = match dh_bucket(packet.destination) % 3 {
            0 => Some(0),
            _ => None,
        };
        assert_eq!(s.schedule(&d, &packet, Duration::ZERO), expected);
    }
}

// ---------------------------------------------------------------------------------------------
// sh

fn sh_bucket(packet: &Packet, port: bool) -> usize {
    let port = if port {
        u32::from(packet.client.port())
    } else {
        0
    };
    hash_32(port.wrapping_add(addr_fold(packet.client.ip())), 8) as usize
}

#[test]
fn sh_fills_buckets_by_weight_and_keeps_a_client_on_one_server() {
    // Weights 2:1 lay the buckets out A A B A A B ...
    let mut s = scheduler(Kind::Sh);
    let d = dests(&[2, 1]);
    s.update(&d);
    let mut spread = [0; 2];
    for c in 0..3000 {
        let packet = client(c);
        let expected = usize::from(sh_bucket(&packet, false) % 3 == 2);
        let pick = s.schedule(&d, &packet, Duration::ZERO).unwrap();
        assert_eq!(pick, expected);
        // Stable across calls and across the client's ports.
        let other_port = Packet {
            client: SocketAddr::new(packet.client.ip(), 555),
            ..packet
        };
        assert_eq!(s.schedule(&d, &other_port, Duration::ZERO), Some(pick));
        spread[pick] += 1;
    }
    let share = f64::from(spread[0]) / 3000.0;
    assert!((0.62..0.71).contains(&share), "{spread:?}");
}

#[test]
fn sh_spreads_3_to_1() {
    let mut s = scheduler(Kind::Sh);
    let d = dests(&[3, 1]);
    s.update(&d);
    let got: Vec<_> = (0..10_000)
        .map(|c| s.schedule(&d, &client(c), Duration::ZERO))
        .collect();
    let spread = counts(&got, 2);
    let share = spread[0] as f64 / 10_000.0;
    assert!((0.70..0.80).contains(&share), "{spread:?}");
}

#[test]
fn sh_port_flag_hashes_the_source_port() {
    let options = Options {
        port: true,
        ..Options::default()
    };
    let mut s = with_options(Kind::Sh, options);
    let d = dests(&[1, 1, 1, 1, 1]);
    s.update(&d);
    let ip: IpAddr = "172.16.0.9".parse().unwrap();
    let mut seen = std::collections::HashSet::new();
    for port in 1000..1100 {
        let packet = Packet {
            client: SocketAddr::new(ip, port),
            destination: "192.0.2.1:80".parse().unwrap(),
        };
        let pick = s.schedule(&d, &packet, Duration::ZERO).unwrap();
        assert_eq!(pick, sh_bucket(&packet, true) % 5);
        seen.insert(pick);
    }
    assert_eq!(seen.len(), 5);
}

#[test]
fn sh_weight_zero_takes_one_bucket_and_fails_without_fallback() {
    // Weights 0:1 lay the buckets out Z A Z A ...: a weight-0 server still takes one bucket.
    let mut s = scheduler(Kind::Sh);
    let d = dests(&[0, 1]);
    s.update(&d);
    let mut none = 0;
    for c in 0..1000 {
        let packet = client(c);
        let pick = s.schedule(&d, &packet, Duration::ZERO);
        if sh_bucket(&packet, false).is_multiple_of(2) {
            assert_eq!(pick, None);
            none += 1;
        } else {
            assert_eq!(pick, Some(1));
        }
    }
    assert!(none > 400, "{none}");
}

#[test]
fn sh_fallback_walks_the_table_from_twice_the_hash() {
    // Buckets hold servers i % 4; server 2 is overloaded. The kernel's fallback probes bucket
    // (2 * ihash + k) & 255 for k = 0, 1, ..., not ihash + 1: a client hashed to a bucket of
    // server 2 lands on server 0 (2 * ihash is a multiple of 4), not on server 3.
    let options = Options {
        fallback: true,
        ..Options::default()
    };
    let mut s = with_options(Kind::Sh, options);
    let mut d = dests(&[1, 1, 1, 1]);
    d[2].overloaded = true;
    s.update(&d);
    let mut fell_back = 0;
    for c in 0..2000 {
        let packet = client(c);
        let ihash = sh_bucket(&packet, false);
        let pick = s.schedule(&d, &packet, Duration::ZERO).unwrap();
        if ihash % 4 == 2 {
            assert_eq!(pick, 0, "client {c}");
            fell_back += 1;
        } else {
            assert_eq!(pick, ihash % 4);
        }
    }
    assert!(fell_back > 300, "{fell_back}");
}

// ---------------------------------------------------------------------------------------------
// mh

#[test]
fn mh_removing_one_of_ten_servers_moves_about_a_tenth_of_the_clients() {
    let mut s = scheduler(Kind::Mh);
    let all = dests(&[1; 10]);
    s.update(&all);
    let before = mapping(&mut s, &all, 10_000);
    let removed = server(3);
    let rest: Vec<Dest> = all.iter().copied().filter(|d| d.addr != removed).collect();
    s.update(&rest);
    let after = mapping(&mut s, &rest, 10_000);

    let moved = before.iter().zip(&after).filter(|(b, a)| b != a).count();
    let share = moved as f64 / 10_000.0;
    assert!((0.08..0.15).contains(&share), "moved {moved}");
    // Every client of the removed server moved; of the others, very few did.
    let stayed_off = before
        .iter()
        .zip(&after)
        .filter(|(b, a)| **b != Some(removed) && b != a)
        .count();
    assert!(
        stayed_off < 100,
        "{stayed_off} clients of surviving servers moved"
    );
    assert!(after.iter().all(|a| a.is_some() && *a != Some(removed)));
}

#[test]
fn mh_spreads_by_weight() {
    let mut s = scheduler(Kind::Mh);
    let d = dests(&[1, 3]);
    s.update(&d);
    let got: Vec<_> = (0..10_000)
        .map(|c| s.schedule(&d, &client(c), Duration::ZERO))
        .collect();
    let spread = counts(&got, 2);
    let share = spread[0] as f64 / 10_000.0;
    assert!((0.22..0.28).contains(&share), "{spread:?}");

    // The kernel's compiled-in table size works the same way.
    let options = Options {
        mh_table_size: 4093,
        ..Options::default()
    };
    let mut s = with_options(Kind::Mh, options);
    s.update(&d);
    let got: Vec<_> = (0..10_000)
        .map(|c| s.schedule(&d, &client(c), Duration::ZERO))
        .collect();
    let share = counts(&got, 2)[0] as f64 / 10_000.0;
    assert!((0.22..0.28).contains(&share), "{share}");
}

/// Five servers of weight 1 under mh, then server 2 quiesced (weight 0): the scheduler, the
/// servers, and where 3000 clients went before the quiescing.
fn mh_with_server_2_quiesced() -> (Scheduler, Vec<Dest>, Vec<Option<SocketAddr>>) {
    let mut s = scheduler(Kind::Mh);
    let mut d = dests(&[1; 5]);
    s.update(&d);
    let before = mapping(&mut s, &d, 3000);
    d[2].weight = 0;
    s.update(&d);
    (s, d, before)
}

#[test]
fn mh_quiesced_server_keeps_its_slots() {
    // Weight 0: its clients get no server (no fallback), everyone else is untouched.
    let (mut s, mut d, before) = mh_with_server_2_quiesced();
    let quiesced = mapping(&mut s, &d, 3000);
    for (b, q) in before.iter().zip(&quiesced) {
        if *b == Some(server(2)) {
            assert_eq!(*q, None);
        } else {
            assert_eq!(q, b);
        }
    }
    // Back to weight 1: the same table as before.
    d[2].weight = 1;
    s.update(&d);
    assert_eq!(mapping(&mut s, &d, 3000), before);
}

// Input: five servers under mh, one quiesced (weight 0); then new options (fallback on, as a
// reload may set) with the server still quiesced, then back at weight 1. Output: with the new
// options its clients go elsewhere and the others keep their servers; back at weight 1 every
// client is where it was at first. (The new scheduler forgot the quiesced server's weight:
// it lost its slots, and its clients and some others moved twice.)
#[test]
fn mh_new_options_keep_a_quiesced_servers_slots() {
    let (s, mut d, before) = mh_with_server_2_quiesced();
    let options = Options {
        fallback: true,
        ..Options::default()
    };
    let mut next = with_options(Kind::Mh, options);
    next.carry_over(&s);
    next.update(&d);
    let quiesced = mapping(&mut next, &d, 3000);
    for (b, q) in before.iter().zip(&quiesced) {
        if *b != Some(server(2)) {
            assert_eq!(q, b);
        }
    }
    d[2].weight = 1;
    next.update(&d);
    assert_eq!(mapping(&mut next, &d, 3000), before);
}

#[test]
fn mh_fallback_finds_another_server() {
    let options = Options {
        fallback: true,
        ..Options::default()
    };
    let mut s = with_options(Kind::Mh, options);
    let mut d = dests(&[1; 4]);
    s.update(&d);
    let before = mapping(&mut s, &d, 2000);
    d[0].overloaded = true;
    d[1].weight = 0;
    s.update(&d);
    let after = mapping(&mut s, &d, 2000);
    for (b, a) in before.iter().zip(&after) {
        let a = a.unwrap();
        assert!(a == server(2) || a == server(3));
        if *b == Some(server(2)) || *b == Some(server(3)) {
            assert_eq!(Some(a), *b);
        }
    }
}

#[test]
fn mh_light_server_keeps_a_turn_when_weights_are_shifted() {
    // max / gcd = 1000 needs 10 bits; the 65537-slot table keeps 8, so weights shift right by 2:
    // 1000 -> 250 turns, and 1 -> 0, which the kernel rounds up to one turn.
    let mut s = scheduler(Kind::Mh);
    let d = dests(&[1, 1000]);
    s.update(&d);
    let got: Vec<_> = (0..20_000)
        .map(|c| s.schedule(&d, &client(c), Duration::ZERO))
        .collect();
    let light = counts(&got, 2)[0];
    assert!((20..200).contains(&light), "{light}");
}

#[test]
fn mh_fallback_rehashes_with_the_kernels_offsets() {
    // ip_vs_mh_get_fallback: probe k looks up hsiphash(roffset + port + addr) with
    // roffset = (k + ihash) % M, until a slot's server is available.
    let options = Options {
        fallback: true,
        mh_table_size: 251,
        ..Options::default()
    };
    let mut s = with_options(Kind::Mh, options);
    let mut d = dests(&[1; 6]);
    s.update(&d);
    let table: Vec<Option<usize>> = {
        let State::Mh(mh) = &s.state else {
            unreachable!()
        };
        (0..251).map(|slot| mh.slot(slot)).collect()
    };
    for dest in &mut d[..4] {
        dest.overloaded = true;
    }
    let key = [2_654_435_761_u64, 2_654_435_761];
    for c in 0..500 {
        let packet = client(c);
        let fold = addr_fold(packet.client.ip());
        let ihash = hsiphash_u32(fold, &key) % 251;
        let expected = (0..251)
            .map(|k| {
                let roffset = (k + ihash) % 251;
                table[(hsiphash_u32(fold.wrapping_add(roffset), &key) % 251) as usize].unwrap()
            })
            .find(|&i| i >= 4);
        let expected = if table[ihash as usize].unwrap() >= 4 {
            table[ihash as usize]
        } else {
            expected
        };
        assert_eq!(
            s.schedule(&d, &packet, Duration::ZERO),
            expected,
            "client {c}"
        );
    }
}

#[test]
fn mh_server_added_at_weight_zero_takes_no_slots() {
    let mut s = scheduler(Kind::Mh);
    let d = dests(&[1, 2, 1]);
    s.update(&d);
    let before = mapping(&mut s, &d, 2000);
    let mut with_zero = d.clone();
    with_zero.push(Dest::new(server(9), 0));
    let mut fresh = scheduler(Kind::Mh);
    fresh.update(&with_zero);
    assert_eq!(mapping(&mut fresh, &with_zero, 2000), before);
}

#[test]
fn mh_port_flag_spreads_one_client_address() {
    let options = Options {
        port: true,
        ..Options::default()
    };
    let mut s = with_options(Kind::Mh, options);
    let d = dests(&[1; 4]);
    s.update(&d);
    let ip: IpAddr = "172.16.0.9".parse().unwrap();
    let picks: std::collections::HashSet<_> = (2000..2100)
        .map(|port| {
            let packet = Packet {
                client: SocketAddr::new(ip, port),
                destination: "192.0.2.1:80".parse().unwrap(),
            };
            s.schedule(&d, &packet, Duration::ZERO).unwrap()
        })
        .collect();
    assert_eq!(picks.len(), 4);
}

// ---------------------------------------------------------------------------------------------
// lblc

fn lblc_entries(s: &Scheduler) -> usize {
    match &s.state {
        State::Lblc(lblc) => lblc.entries(),
        other => panic!("not lblc: {other:?}"),
    }
}

fn lblcr_members(s: &mut Scheduler, packet: &Packet) -> Vec<SocketAddr> {
    match &mut s.state {
        State::Lblcr(lblcr) => lblcr.members(packet.destination.ip()).unwrap(),
        other => panic!("not lblcr: {other:?}"),
    }
}

#[test]
fn lblc_keeps_a_destination_on_one_server_until_it_overloads() {
    let mut s = scheduler(Kind::Lblc);
    let mut d = dests(&[10, 10]);
    let dst = to_destination(1);
    let t = Duration::from_secs(100);
    // Both idle: wlc picks the first.
    assert_eq!(s.schedule(&d, &dst, t), Some(0));
    // Up to its weight in active connections, the destination stays.
    for active in [5, 10] {
        d[0].active = active;
        assert_eq!(s.schedule(&d, &dst, t), Some(0));
    }
    // Above its weight, but no server is under half of its weight: still stays.
    d[0].active = 11;
    d[1].active = 5;
    assert_eq!(s.schedule(&d, &dst, t), Some(0));
    // A new destination meanwhile goes by wlc.
    assert_eq!(s.schedule(&d, &to_destination(2), t), Some(1));
    // Above its weight while another server is under half of its own: moves, and sticks there.
    d[1].active = 4;
    assert_eq!(s.schedule(&d, &dst, t), Some(1));
    d[0].active = 0;
    assert_eq!(s.schedule(&d, &dst, t), Some(1));
}

#[test]
fn lblc_moves_off_a_quiesced_or_removed_server_but_not_off_a_flagged_one() {
    let mut s = scheduler(Kind::Lblc);
    let mut d = dests(&[10, 10, 10]);
    let dst = to_destination(7);
    let t = Duration::from_secs(5);
    assert_eq!(s.schedule(&d, &dst, t), Some(0));
    // The kernel does not check the overload flag of the cached server.
    d[0].overloaded = true;
    assert_eq!(s.schedule(&d, &dst, t), Some(0));
    // Weight 0 is checked: wlc picks again (skipping the flagged server).
    d[0].weight = 0;
    assert_eq!(s.schedule(&d, &dst, t), Some(1));
    // Removed from the service: wlc again.
    let rest = d[2..].to_vec();
    s.update(&rest);
    assert_eq!(s.schedule(&rest, &dst, t), Some(0));
    assert_eq!(rest[0].addr, server(2));
}

#[test]
fn lblc_entries_expire_at_the_kernels_full_sweep() {
    let mut s = scheduler(Kind::Lblc);
    let mut d = dests(&[10, 10]);
    let t0 = Duration::from_secs(1000);
    let (dst, other) = (to_destination(1), to_destination(2));
    assert_eq!(s.schedule(&d, &dst, t0), Some(0));
    // Server 1 becomes the wlc choice, but 0 is not overloaded: the entry holds.
    d[0].active = 3;
    assert_eq!(lblc_entries(&s), 1);

    // Sweeps run every 60 s from the first decision, a full one every 30th: at t0 + 23.5 h the
    // entry is not 24 h idle yet, and the next full sweep is at t0 + 24 h.
    assert_eq!(
        s.schedule(&d, &other, t0 + DAY - Duration::from_secs(1)),
        Some(1)
    );
    assert_eq!(lblc_entries(&s), 2);
    assert_eq!(s.schedule(&d, &other, t0 + DAY), Some(1));
    assert_eq!(lblc_entries(&s), 1);
    assert_eq!(s.schedule(&d, &dst, t0 + DAY), Some(1));
}

#[test]
fn lblc_entry_in_use_does_not_expire() {
    let mut s = scheduler(Kind::Lblc);
    let mut d = dests(&[10, 10]);
    let dst = to_destination(1);
    let t0 = Duration::from_secs(1);
    assert_eq!(s.schedule(&d, &dst, t0), Some(0));
    d[0].active = 3;
    for hour in 1..=72 {
        assert_eq!(
            s.schedule(&d, &dst, t0 + HOUR * hour),
            Some(0),
            "hour {hour}"
        );
    }
}

#[test]
fn lblc_full_table_refuses_entries_until_idle_ones_are_collected() {
    let mut s = scheduler(Kind::Lblc);
    let d = dests(&[1, 1]);
    let contains = |s: &mut Scheduler, packet: &Packet| match &mut s.state {
        State::Lblc(lblc) => lblc.contains(packet.destination.ip()),
        _ => unreachable!(),
    };
    // The kernel admits entries while `entries > max_size` is false: 16385 of them.
    for i in 0..16_400 {
        assert!(s.schedule(&d, &to_destination(i), Duration::ZERO).is_some());
    }
    assert_eq!(lblc_entries(&s), 16_385);
    let late = to_destination(20_000);
    assert!(s.schedule(&d, &late, Duration::from_secs(359)).is_some());
    assert!(!contains(&mut s, &late));
    assert_eq!(lblc_entries(&s), 16_385);
    // The sweep at 360 s finds entries idle for ENTRY_TIMEOUT (6 min) and collects whole
    // buckets until a third more than the excess is gone; then entries are taken again.
    let later = to_destination(20_001);
    assert!(s.schedule(&d, &later, Duration::from_secs(360)).is_some());
    assert!(contains(&mut s, &later));
    let entries = lblc_entries(&s);
    assert!((16_300..16_385).contains(&entries), "{entries}");
}

#[test]
fn lblc_survives_a_clock_jump_of_centuries() {
    let mut s = scheduler(Kind::Lblc);
    let d = dests(&[1, 1]);
    assert_eq!(s.schedule(&d, &to_destination(1), Duration::ZERO), Some(0));
    let far = Duration::from_secs(u64::MAX / 2);
    assert_eq!(s.schedule(&d, &to_destination(2), far), Some(0));
    assert_eq!(lblc_entries(&s), 1);
    assert_eq!(s.schedule(&d, &to_destination(3), Duration::MAX), Some(0));
    assert_eq!(s.schedule(&d, &to_destination(4), Duration::MAX), Some(0));
}

// ---------------------------------------------------------------------------------------------
// lblcr

#[test]
fn lblcr_grows_the_set_under_load_and_uses_its_least_loaded_member() {
    let mut s = scheduler(Kind::Lblcr);
    let mut d = dests(&[10, 10, 10]);
    let dst = to_destination(1);
    let t = Duration::from_secs(50);
    assert_eq!(s.schedule(&d, &dst, t), Some(0));
    assert_eq!(lblcr_members(&mut s, &dst), [server(0)]);

    // Server 0 is over its weight while others are idle: wlc adds server 1 to the set.
    d[0].active = 11;
    assert_eq!(s.schedule(&d, &dst, t), Some(1));
    assert_eq!(lblcr_members(&mut s, &dst), [server(1), server(0)]);

    // The set's least loaded member serves; server 2 (idle, outside the set) does not.
    d[1].active = 1;
    for _ in 0..3 {
        assert_eq!(s.schedule(&d, &dst, t), Some(1));
    }
    d[0].active = 0;
    assert_eq!(s.schedule(&d, &dst, t), Some(0));

    // Both members overloaded: the set grows again.
    d[0].active = 11;
    d[1].active = 11;
    assert_eq!(s.schedule(&d, &dst, t), Some(2));
    assert_eq!(
        lblcr_members(&mut s, &dst),
        [server(2), server(1), server(0)]
    );
}

#[test]
fn lblcr_sheds_the_most_loaded_member_of_a_set_unchanged_for_the_expiration() {
    let mut s = scheduler(Kind::Lblcr);
    let mut d = dests(&[10, 10, 10]);
    let dst = to_destination(1);
    let t0 = Duration::from_secs(10);
    s.schedule(&d, &dst, t0);
    d[0].active = 11;
    assert_eq!(s.schedule(&d, &dst, t0), Some(1));
    // Set {1, 0}, last changed at t0. Server 1 stays the least loaded.
    d[0].active = 8;
    d[1].active = 2;
    // Used every hour, so the entry itself never expires; the set is only trimmed once it has
    // been unchanged for strictly more than 24 h.
    for hour in 1..=24 {
        assert_eq!(s.schedule(&d, &dst, t0 + HOUR * hour), Some(1));
    }
    assert_eq!(lblcr_members(&mut s, &dst), [server(1), server(0)]);
    let later = t0 + DAY + Duration::from_secs(1);
    assert_eq!(s.schedule(&d, &dst, later), Some(1));
    assert_eq!(lblcr_members(&mut s, &dst), [server(1)]);
    // A single member is never shed, however long the set stays unchanged.
    for hour in 1..=30 {
        assert_eq!(s.schedule(&d, &dst, later + HOUR * hour), Some(1));
    }
    assert_eq!(lblcr_members(&mut s, &dst), [server(1)]);
}

#[test]
fn lblcr_forgets_removed_servers() {
    let mut s = scheduler(Kind::Lblcr);
    let mut d = dests(&[10, 10]);
    let dst = to_destination(1);
    let t = Duration::from_secs(1);
    s.schedule(&d, &dst, t);
    d[0].active = 11;
    assert_eq!(s.schedule(&d, &dst, t), Some(1));
    let rest = d[..1].to_vec();
    s.update(&rest);
    assert_eq!(lblcr_members(&mut s, &dst), [server(0)]);
    // The only server is over its weight and nobody is under half: it still serves.
    assert_eq!(s.schedule(&rest, &dst, t), Some(0));
}

// ---------------------------------------------------------------------------------------------
// Properties

fn arb_weight() -> impl Strategy<Value = u32> {
    prop_oneof![
        3 => Just(0_u32),
        6 => 1_u32..8,
        1 => Just(i32::MAX as u32),
        1 => Just(u32::MAX),
        1 => any::<u32>(),
    ]
}

fn arb_count() -> impl Strategy<Value = u32> {
    prop_oneof![4 => 0_u32..20, 1 => any::<u32>()]
}

fn arb_dest() -> impl Strategy<Value = Dest> {
    (
        0_usize..12,
        arb_weight(),
        arb_count(),
        arb_count(),
        proptest::bool::weighted(0.2),
    )
        .prop_map(|(i, weight, active, inactive, overloaded)| Dest {
            active,
            inactive,
            overloaded,
            ..Dest::new(server(i), weight)
        })
}

fn arb_packet() -> impl Strategy<Value = Packet> {
    let v4 = any::<[u8; 4]>().prop_map(|o| IpAddr::V4(Ipv4Addr::from(o)));
    let v6 = any::<[u8; 16]>().prop_map(|o| IpAddr::V6(Ipv6Addr::from(o)));
    let ip = prop_oneof![3 => v4, 1 => v6];
    (ip.clone(), any::<u16>(), ip, any::<u16>()).prop_map(|(c, cp, d, dp)| Packet {
        client: SocketAddr::new(c, cp),
        destination: SocketAddr::new(d, dp),
    })
}

fn arb_kind() -> impl Strategy<Value = Kind> {
    proptest::sample::select(Kind::ALL.to_vec())
}

fn arb_options() -> impl Strategy<Value = Options> {
    (
        any::<bool>(),
        any::<bool>(),
        proptest::sample::select(vec![2_u32, 251, 4093]),
        proptest::sample::select(vec![Duration::ZERO, HOUR, DAY]),
    )
        .prop_map(
            |(fallback, port, mh_table_size, locality_expiration)| Options {
                fallback,
                port,
                mh_table_size,
                locality_expiration,
            },
        )
}

/// One step: maybe update first, then schedule.
#[derive(Debug, Clone)]
struct Step {
    dests: Vec<Dest>,
    update: bool,
    packet: Packet,
    advance: Duration,
}

fn arb_step() -> impl Strategy<Value = Step> {
    let advance = prop_oneof![
        Just(Duration::ZERO),
        (0_u64..4000).prop_map(Duration::from_secs),
        Just(DAY),
        Just(Duration::MAX),
    ];
    (
        proptest::collection::vec(arb_dest(), 0..10),
        any::<bool>(),
        arb_packet(),
        advance,
    )
        .prop_map(|(dests, update, packet, advance)| Step {
            dests,
            update,
            packet,
            advance,
        })
}

proptest! {
    /// Whatever the servers, updates, packets and clock: no panic, and a pick is an index into
    /// the slice with weight > 0, not flagged overloaded (except lblc's cached server, which the
    /// kernel does not check).
    #[test]
    fn picks_are_valid_servers(
        kind in arb_kind(),
        options in arb_options(),
        steps in proptest::collection::vec(arb_step(), 1..12),
        repeat in 1_usize..4,
    ) {
        let mut s = Scheduler::new(kind, options).unwrap();
        let mut now = Duration::ZERO;
        for step in &steps {
            if step.update {
                s.update(&step.dests);
            }
            now = now.saturating_add(step.advance);
            for _ in 0..repeat {
                if let Some(i) = s.schedule(&step.dests, &step.packet, now) {
                    prop_assert!(i < step.dests.len());
                    prop_assert!(step.dests[i].weight > 0);
                    if kind != Kind::Lblc {
                        prop_assert!(!step.dests[i].overloaded);
                    }
                }
            }
        }
    }

    /// With any server available and nothing stale, rr, wrr, the least-connection family, lblc
    /// and lblcr always find one; hashing may hit an unavailable bucket.
    #[test]
    fn dynamic_schedulers_find_an_available_server(
        kind in proptest::sample::select(vec![
            Kind::Rr, Kind::Wrr, Kind::Lc, Kind::Wlc, Kind::Sed, Kind::Nq, Kind::Lblc, Kind::Lblcr,
        ]),
        d in proptest::collection::vec(arb_dest(), 1..10),
        packet in arb_packet(),
    ) {
        let mut s = scheduler(kind);
        s.update(&d);
        let any_available = d.iter().any(|d| d.weight > 0 && !d.overloaded);
        let pick = s.schedule(&d, &packet, Duration::ZERO);
        prop_assert_eq!(pick.is_some(), any_available);
    }

    /// rr: k rounds over n servers with weight > 0 give each exactly k connections.
    #[test]
    fn rr_is_exactly_fair(weights in proptest::collection::vec(1_u32..5, 1..8), rounds in 1_usize..5) {
        let mut s = scheduler(Kind::Rr);
        let d = dests(&weights);
        s.update(&d);
        let got = picks(&mut s, &d, rounds * d.len());
        prop_assert!(counts(&got, d.len()).iter().all(|&c| c == rounds));
    }

    /// wrr: sum(weights) picks from a fresh state give each server exactly its weight.
    #[test]
    fn wrr_is_exactly_proportional(weights in proptest::collection::vec(0_u32..12, 1..7)) {
        let mut s = scheduler(Kind::Wrr);
        let d = dests(&weights);
        s.update(&d);
        let total: u32 = weights.iter().sum();
        let got = picks(&mut s, &d, total as usize);
        let expected: Vec<usize> = weights.iter().map(|&w| w as usize).collect();
        prop_assert_eq!(counts(&got, d.len()), expected);
    }

    /// wrr's skipping of empty passes changes nothing: picks equal the kernel's pass-by-pass loop,
    /// across updates and overload flips.
    #[test]
    fn wrr_matches_the_kernel_loop(
        steps in proptest::collection::vec(
            (proptest::collection::vec((0_u32..20, proptest::bool::weighted(0.3)), 0..6), any::<bool>(), 1_usize..6),
            1..10,
        ),
    ) {
        let mut ours = scheduler(Kind::Wrr);
        let mut kernel = KernelWrr::default();
        let mut previous_len = None;
        for (servers, update, picks_here) in steps {
            let d: Vec<Dest> = servers
                .iter()
                .enumerate()
                .map(|(i, &(w, overloaded))| Dest { overloaded, ..Dest::new(server(i), w) })
                .collect();
            // Same-length steps may skip the update (weights and flags change under the state);
            // a length change always updates, as `schedule` does by itself.
            if update || previous_len != Some(d.len()) {
                ours.update(&d);
                kernel.update(&d);
                previous_len = Some(d.len());
            }
            for _ in 0..picks_here {
                prop_assert_eq!(ours.schedule(&d, &client(0), Duration::ZERO), kernel.schedule(&d));
            }
        }
    }

    /// lc, wlc, sed: the pick has the least load by the kernel's formula, and no earlier server
    /// ties it.
    #[test]
    fn least_connection_picks_a_minimum(
        kind in proptest::sample::select(vec![Kind::Lc, Kind::Wlc, Kind::Sed]),
        d in proptest::collection::vec(arb_dest(), 1..10),
    ) {
        let load = |d: &Dest| -> (u128, u128) {
            let oh = match kind {
                Kind::Lc => conn_overhead(d),
                Kind::Wlc => conn_overhead(d),
                _ => u64::from(d.active) + 1,
            };
            let w = if kind == Kind::Lc { 1 } else { d.weight };
            (u128::from(oh), u128::from(w))
        };
        let eligible: Vec<usize> = (0..d.len()).filter(|&i| d[i].weight > 0 && !d[i].overloaded).collect();
        let pick = pick_once(kind, &d);
        prop_assert_eq!(pick.is_some(), !eligible.is_empty());
        if let Some(p) = pick {
            let (poh, pw) = load(&d[p]);
            for &i in &eligible {
                let (oh, w) = load(&d[i]);
                // oh / w < poh / pw would be a lighter server.
                prop_assert!(oh * pw >= poh * w, "{} lighter than {}", i, p);
                if i < p {
                    prop_assert!(oh * pw > poh * w, "{} ties {} earlier", i, p);
                }
            }
        }
    }

    /// Hashing schedulers answer the same for the same packet, call after call.
    #[test]
    fn hashing_is_stable(
        kind in proptest::sample::select(vec![Kind::Dh, Kind::Sh, Kind::Mh]),
        options in arb_options(),
        d in proptest::collection::vec(arb_dest(), 0..10),
        packets in proptest::collection::vec(arb_packet(), 1..20),
    ) {
        let mut s = Scheduler::new(kind, options).unwrap();
        s.update(&d);
        let first: Vec<_> = packets.iter().map(|p| s.schedule(&d, p, Duration::ZERO)).collect();
        let second: Vec<_> = packets.iter().map(|p| s.schedule(&d, p, HOUR)).collect();
        prop_assert_eq!(first, second);
    }
}

/// Per-client mapping helper used by several mh tests, checked against itself once so a broken
/// helper cannot make them pass vacuously.
#[test]
fn mapping_helper_sees_every_server() {
    let mut s = scheduler(Kind::Mh);
    let d = dests(&[1; 4]);
    s.update(&d);
    let seen: HashMap<_, usize> =
        mapping(&mut s, &d, 1000)
            .into_iter()
            .flatten()
            .fold(HashMap::new(), |mut m, a| {
                *m.entry(a).or_default() += 1;
                m
            });
    assert_eq!(seen.len(), 4);
}
