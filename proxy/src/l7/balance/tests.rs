//! Tests for the balancing algorithms: behaviour per algorithm, then properties over arbitrary
//! candidate lists.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

use proptest::prelude::*;

use super::hash::hash_bytes;
use super::roundrobin::build_schedule;
use super::*;

/// Servers with the given weights; indices start at 10 so positions and indices differ.
fn servers(weights: &[u32]) -> Vec<Candidate> {
    weights
        .iter()
        .enumerate()
        .map(|(i, &weight)| Candidate {
            index: 10 + i,
            weight,
            active: 0,
            max: 0,
        })
        .collect()
}

fn balancer(spec: &str) -> Balancer {
    Balancer::new(spec.parse().unwrap())
}

fn picks(b: &Balancer, candidates: &[Candidate], n: usize) -> Vec<usize> {
    (0..n)
        .map(|_| b.pick(candidates, &PickKey::default()).unwrap())
        .collect()
}

fn counts(picked: &[usize]) -> HashMap<usize, usize> {
    let mut map = HashMap::new();
    for &i in picked {
        *map.entry(i).or_default() += 1;
    }
    map
}

fn longest_run(picked: &[usize]) -> usize {
    picked
        .chunk_by(|a, b| a == b)
        .map(<[usize]>::len)
        .max()
        .unwrap_or(0)
}

fn full(mut c: Candidate) -> Candidate {
    c.active = 3;
    c.max = 3;
    c
}

const ALL: [&str; 8] = [
    "roundrobin",
    "static-rr",
    "leastconn",
    "first",
    "source",
    "uri",
    "hdr(x-user)",
    "random",
];

mod parse {
    use super::*;

    #[test]
    fn every_keyword_parses_and_displays_back() {
        for spec in ALL {
            let algorithm: Algorithm = spec.parse().unwrap();
            assert_eq!(algorithm.to_string(), spec);
            assert_eq!(Balancer::new(algorithm.clone()).algorithm(), &algorithm);
        }
    }

    #[test]
    fn header_names_are_normalised() {
        let algorithm: Algorithm = " hdr( X-Forwarded-For ) ".parse().unwrap();
        assert_eq!(
            algorithm,
            Algorithm::Hdr(HeaderName::from_static("x-forwarded-for"))
        );
        assert_eq!("RoundRobin".parse(), Ok(Algorithm::RoundRobin));
        assert_eq!("random(2)".parse(), Ok(Algorithm::Random));
    }

    #[test]
    fn errors_say_what_is_allowed() {
        let err = "weighted".parse::<Algorithm>().unwrap_err();
        assert_eq!(err, ParseAlgorithmError::Unknown("weighted".into()));
        let text = err.to_string();
        for name in ["roundrobin", "static-rr", "leastconn", "first", "source"] {
            assert!(text.contains(name), "{text}");
        }
        assert!(
            text.contains("hdr(<name>)") && text.contains("random"),
            "{text}"
        );
        assert!(matches!(
            "hdr()".parse::<Algorithm>(),
            Err(ParseAlgorithmError::InvalidHeader(_))
        ));
        assert!(matches!(
            "hdr(bad name)".parse::<Algorithm>(),
            Err(ParseAlgorithmError::InvalidHeader(_))
        ));
        assert!(matches!(
            "hdr(host".parse::<Algorithm>(),
            Err(ParseAlgorithmError::Unknown(_))
        ));
        assert!(matches!(
            "random(3)".parse::<Algorithm>(),
            Err(ParseAlgorithmError::Unknown(_))
        ));
    }
}

mod candidate {
    use super::*;

    #[test]
    fn room_depends_on_max() {
        let c = Candidate {
            index: 0,
            weight: 1,
            active: 5,
            max: 0,
        };
        assert!(c.has_room(), "max 0 is unlimited");
        assert!(Candidate { max: 6, ..c }.has_room());
        assert!(!Candidate { max: 5, ..c }.has_room());
        assert!(!Candidate { max: 4, ..c }.has_room());
    }

    #[test]
    fn balancer_is_shareable() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Balancer>();
    }
}

mod roundrobin {
    use super::*;

    #[test]
    fn two_to_one_interleaves() {
        let b = balancer("roundrobin");
        let cs = servers(&[2, 1]);
        assert_eq!(picks(&b, &cs, 9), [10, 11, 10, 10, 11, 10, 10, 11, 10]);
    }

    #[test]
    fn equal_weights_rotate_in_order() {
        let b = balancer("roundrobin");
        let cs = servers(&[7, 7, 7]);
        assert_eq!(picks(&b, &cs, 6), [10, 11, 12, 10, 11, 12]);
    }

    #[test]
    fn heavy_server_is_spread_not_bursty() {
        let b = balancer("roundrobin");
        let cs = servers(&[5, 1, 1]);
        let seq = picks(&b, &cs, 7);
        assert_eq!(counts(&seq), HashMap::from([(10, 5), (11, 1), (12, 1)]));
        assert!(longest_run(&seq) <= 3, "{seq:?}");
        // nginx's order for 5:1:1 puts each light server between heavy picks.
        assert_ne!(seq[..5], [10; 5]);
    }

    #[test]
    fn stays_within_one_where_plain_nginx_drifts() {
        // nginx's smooth WRR leaves the last server 1.05 picks behind its share after 280 picks.
        let weights = [167, 5, 234, 19, 29, 207, 56, 217];
        let b = balancer("roundrobin");
        let picked = picks(&b, &servers(&weights), 934);
        assert!(within_one(&weights, &picked));
    }

    #[test]
    fn full_servers_are_skipped() {
        let b = balancer("roundrobin");
        let mut cs = servers(&[1, 1, 1]);
        cs[1] = full(cs[1]);
        let c = counts(&picks(&b, &cs, 100));
        assert_eq!(c.get(&11), None);
        assert_eq!(c[&10] + c[&12], 100);
        assert!(c[&10].abs_diff(c[&12]) <= 34, "{c:?}");
    }

    #[test]
    fn none_when_nothing_can_take_it() {
        let b = balancer("roundrobin");
        let key = PickKey::default();
        assert_eq!(b.pick(&[], &key), None);
        let all_full: Vec<_> = servers(&[1, 2]).into_iter().map(full).collect();
        assert_eq!(b.pick(&all_full, &key), None);
        assert_eq!(b.pick(&servers(&[0, 0]), &key), None);
    }

    #[test]
    fn weight_zero_is_never_picked() {
        let b = balancer("roundrobin");
        let cs = servers(&[0, 1, 0, 2]);
        let c = counts(&picks(&b, &cs, 30));
        assert_eq!(c, HashMap::from([(11, 10), (13, 20)]));
    }

    #[test]
    fn leaving_server_causes_no_burst() {
        let b = balancer("roundrobin");
        let three = servers(&[1, 1, 1]);
        let mut seq = picks(&b, &three, 7);
        let two = [three[0], three[2]];
        let after = picks(&b, &two, 20);
        assert_eq!(counts(&after), HashMap::from([(10, 10), (12, 10)]));
        seq.extend(after);
        assert!(longest_run(&seq) <= 2, "{seq:?}");
    }

    #[test]
    fn joining_server_gets_its_share_not_a_burst() {
        let b = balancer("roundrobin");
        let two = servers(&[3, 3]);
        picks(&b, &two, 5);
        let three = servers(&[3, 3, 3]);
        let after = picks(&b, &three, 9);
        assert_eq!(
            counts(&after),
            HashMap::from([(10, 3), (11, 3), (12, 3)]),
            "{after:?}"
        );
        assert!(longest_run(&after) <= 1, "{after:?}");
    }

    #[test]
    fn alternating_sets_stay_exact() {
        // Two views of the backend alternating (e.g. threads racing a health change) thrash the
        // cache; each pick must still come from its own set.
        let b = balancer("roundrobin");
        let a = servers(&[1, 2]);
        let z = servers(&[4, 0, 1]);
        for _ in 0..50 {
            assert!([10, 11].contains(&b.pick(&a, &PickKey::default()).unwrap()));
            assert!([10, 12].contains(&b.pick(&z, &PickKey::default()).unwrap()));
        }
    }

    #[test]
    fn huge_weight_sums_are_scaled_into_the_cache() {
        let weights: Vec<u32> = (0..40).map(|i| if i < 20 { 256 } else { 1 }).collect();
        let cs = servers(&weights);
        let schedule = build_schedule(&cs);
        assert!(schedule.len() <= MAX_SCHEDULE_LEN);
        let c = counts(&schedule.iter().map(|&p| usize::from(p)).collect::<Vec<_>>());
        assert_eq!(c.len(), 40, "every server keeps a slot");
        assert!(c.values().all(|&n| n == 1 || n >= 150), "{c:?}");

        let b = balancer("roundrobin");
        let picked = counts(&picks(&b, &cs, schedule.len() * 3));
        assert_eq!(picked.len(), 40);
        assert!(picked[&10] > 150 * picked[&39]);
        let weights = [u32::MAX, u32::MAX - 1, 1];
        assert!(build_schedule(&servers(&weights)).len() <= MAX_SCHEDULE_LEN);
    }

    #[test]
    fn more_servers_than_schedule_slots_still_rotate() {
        let cs = servers(&vec![1; MAX_SCHEDULE_LEN + 100]);
        let b = balancer("roundrobin");
        let c = counts(&picks(&b, &cs, cs.len()));
        assert_eq!(c.len(), cs.len());
        assert!(c.values().all(|&n| n == 1));
    }

    #[test]
    fn schedule_is_cached_and_rebuilt_when_the_set_changes() {
        let b = balancer("roundrobin");
        let cached = |b: &Balancer| b.schedule.as_ref().unwrap().cached_len();
        assert_eq!(cached(&b), 0);
        b.prepare(&servers(&[2, 1]));
        assert_eq!(cached(&b), 3);
        assert_eq!(picks(&b, &servers(&[2, 1]), 3), [10, 11, 10]);
        picks(&b, &servers(&[1, 1, 1, 1]), 1);
        assert_eq!(cached(&b), 4);
        picks(&b, &servers(&[1, 3]), 1);
        assert_eq!(cached(&b), 4, "1:3 has a cycle of 4 too");
        assert!(balancer("leastconn").schedule.is_none());
    }

    #[test]
    fn threads_share_one_schedule() {
        let b = balancer("roundrobin");
        let cs = servers(&[3, 2, 1]);
        b.prepare(&cs);
        let per_thread = 6 * 250;
        let all: Vec<usize> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| s.spawn(|| picks(&b, &cs, per_thread)))
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect()
        });
        // Every cursor position is handed out once, so the shares are exact.
        assert_eq!(
            counts(&all),
            HashMap::from([(10, 3000), (11, 2000), (12, 1000)])
        );
    }

    #[test]
    fn threads_racing_rebuilds_stay_valid() {
        let b = balancer("roundrobin");
        let a = servers(&[5, 1, 3]);
        let mut z = servers(&[2, 2, 2, 9]);
        z[0] = full(z[0]);
        std::thread::scope(|s| {
            for t in 0..4 {
                let (b, a, z) = (&b, &a, &z);
                s.spawn(move || {
                    for i in 0..2000 {
                        if (i + t) % 3 == 0 {
                            b.prepare(if i % 2 == 0 { a } else { z });
                        }
                        let pa = b.pick(a, &PickKey::default()).unwrap();
                        assert!((10..13).contains(&pa));
                        let pz = b.pick(z, &PickKey::default()).unwrap();
                        assert!((11..14).contains(&pz), "full server 10 picked");
                    }
                });
            }
        });
    }
}

mod static_rr {
    use super::*;

    #[test]
    fn two_to_one_interleaves_over_exact_cycles() {
        let b = balancer("static-rr");
        let cs = servers(&[2, 1]);
        assert_eq!(picks(&b, &cs, 6), [10, 11, 10, 10, 11, 10]);
    }

    #[test]
    fn every_cycle_has_exact_shares() {
        let b = balancer("static-rr");
        let cs = servers(&[5, 0, 3, 1]);
        for _ in 0..3 {
            let cycle = picks(&b, &cs, 9);
            assert_eq!(counts(&cycle), HashMap::from([(10, 5), (12, 3), (13, 1)]));
            assert!(longest_run(&cycle) <= 2, "{cycle:?}");
        }
    }

    #[test]
    fn full_servers_are_skipped_and_all_full_is_none() {
        let b = balancer("static-rr");
        let mut cs = servers(&[1, 4, 1]);
        cs[1] = full(cs[1]);
        let c = counts(&picks(&b, &cs, 60));
        assert_eq!(c.get(&11), None);
        assert_eq!(c.values().sum::<usize>(), 60);
        let all_full: Vec<_> = cs.into_iter().map(full).collect();
        assert_eq!(b.pick(&all_full, &PickKey::default()), None);
        assert_eq!(b.pick(&[], &PickKey::default()), None);
    }

    #[test]
    fn huge_weights_do_not_overflow() {
        let b = balancer("static-rr");
        let cs = servers(&[u32::MAX, u32::MAX, 1]);
        let c = counts(&picks(&b, &cs, 1000));
        assert_eq!(c.values().sum::<usize>(), 1000);
        assert!(c.contains_key(&10) && c.contains_key(&11));
    }
}

mod leastconn {
    use super::*;

    fn loaded(specs: &[(u32, u32, u32)]) -> Vec<Candidate> {
        specs
            .iter()
            .enumerate()
            .map(|(i, &(weight, active, max))| Candidate {
                index: 10 + i,
                weight,
                active,
                max,
            })
            .collect()
    }

    #[test]
    fn picks_the_least_loaded() {
        let b = balancer("leastconn");
        let cs = loaded(&[(1, 5, 0), (1, 2, 0), (1, 7, 0)]);
        assert_eq!(b.pick(&cs, &PickKey::default()), Some(11));
    }

    #[test]
    fn load_is_relative_to_weight() {
        let b = balancer("leastconn");
        // (1+1)/1 = 2 against (3+1)/3 = 1.33: the heavier, busier server is less loaded.
        let cs = loaded(&[(1, 1, 0), (3, 3, 0)]);
        assert_eq!(b.pick(&cs, &PickKey::default()), Some(11));
        // (5+1)/3 = 2 against (1+1)/1 = 2: a tie, so both get turns.
        let cs = loaded(&[(1, 1, 0), (3, 5, 0)]);
        assert_eq!(
            counts(&picks(&b, &cs, 10)),
            HashMap::from([(10, 5), (11, 5)])
        );
    }

    #[test]
    fn ties_are_shared_evenly() {
        let b = balancer("leastconn");
        let cs = loaded(&[(1, 0, 0), (1, 0, 0), (1, 0, 0)]);
        assert_eq!(
            counts(&picks(&b, &cs, 300)),
            HashMap::from([(10, 100), (11, 100), (12, 100)])
        );
        // Only the tied subset shares, evenly, whatever its position.
        let cs = loaded(&[(1, 4, 0), (1, 0, 0), (1, 9, 0), (1, 0, 0)]);
        assert_eq!(
            counts(&picks(&b, &cs, 100)),
            HashMap::from([(11, 50), (13, 50)])
        );
    }

    #[test]
    fn full_servers_are_skipped() {
        let b = balancer("leastconn");
        let cs = loaded(&[(1, 1, 1), (1, 9, 0)]);
        assert_eq!(b.pick(&cs, &PickKey::default()), Some(11));
        let cs = loaded(&[(1, 1, 1), (1, 9, 9), (0, 0, 0)]);
        assert_eq!(b.pick(&cs, &PickKey::default()), None);
    }

    #[test]
    fn simulated_connections_balance_by_weight() {
        let b = balancer("leastconn");
        let mut cs = loaded(&[(1, 0, 0), (2, 0, 0), (3, 0, 0)]);
        for _ in 0..600 {
            let index = b.pick(&cs, &PickKey::default()).unwrap();
            cs[index - 10].active += 1;
        }
        let active: Vec<u32> = cs.iter().map(|c| c.active).collect();
        assert_eq!(active, [100, 200, 300]);
    }
}

mod first {
    use super::*;

    #[test]
    fn lowest_index_with_room_whatever_the_order() {
        let b = balancer("first");
        let mut cs = servers(&[1, 1, 1]);
        cs.reverse();
        assert_eq!(b.pick(&cs, &PickKey::default()), Some(10));
        cs[2] = full(cs[2]); // index 10
        assert_eq!(b.pick(&cs, &PickKey::default()), Some(11));
    }

    #[test]
    fn fills_servers_in_order() {
        let b = balancer("first");
        let mut cs = servers(&[1, 1, 1]);
        for c in &mut cs {
            c.max = 2;
        }
        let mut order = Vec::new();
        while let Some(index) = b.pick(&cs, &PickKey::default()) {
            order.push(index);
            cs[index - 10].active += 1;
        }
        assert_eq!(order, [10, 10, 11, 11, 12, 12]);
    }

    #[test]
    fn weight_zero_and_empty() {
        let b = balancer("first");
        assert_eq!(b.pick(&servers(&[0, 3]), &PickKey::default()), Some(11));
        assert_eq!(b.pick(&[], &PickKey::default()), None);
    }
}

mod hashing {
    use super::*;

    fn ip(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(n))
    }

    fn by_source(b: &Balancer, cs: &[Candidate], n: u32) -> Option<usize> {
        let key = PickKey {
            src: Some(ip(n)),
            ..PickKey::default()
        };
        b.pick(cs, &key)
    }

    #[test]
    fn hash_is_pinned() {
        // The mapping must not change between builds or releases: persistent clients rely on it.
        // Values cross-checked against an independent FNV-1a + fmix64 implementation.
        assert_eq!(hash_bytes(b""), 0xefd0_1f60_ba99_2926);
        assert_eq!(hash_bytes(b"/index.html"), 0x43f3_e2a1_af9f_1352);
    }

    #[test]
    fn same_key_same_server() {
        let cs = servers(&[1, 2, 3]);
        let (one, two) = (balancer("source"), balancer("source"));
        for n in 0..1000 {
            let first = by_source(&one, &cs, n);
            assert!(first.is_some());
            assert_eq!(first, by_source(&one, &cs, n));
            assert_eq!(first, by_source(&two, &cs, n));
        }
    }

    #[test]
    fn slice_order_does_not_matter() {
        let b = balancer("source");
        let cs = servers(&[1, 2, 3, 4]);
        let mut shuffled = cs.clone();
        shuffled.swap(0, 3);
        shuffled.swap(1, 2);
        for n in 0..500 {
            assert_eq!(by_source(&b, &cs, n), by_source(&b, &shuffled, n));
        }
    }

    #[test]
    fn spreads_by_weight() {
        let b = balancer("source");
        let cs = servers(&[1, 2, 3, 4]);
        let keys = 100_000_u32;
        let c = counts(
            &(0..keys)
                .map(|n| by_source(&b, &cs, n.wrapping_mul(2_654_435_761)).unwrap())
                .collect::<Vec<_>>(),
        );
        for (i, w) in [1, 2, 3, 4].into_iter().enumerate() {
            let expected = keys as usize * w / 10;
            let got = c[&(10 + i)];
            assert!(got.abs_diff(expected) < expected / 20, "{c:?}");
        }
    }

    #[test]
    fn full_server_is_still_returned() {
        let b = balancer("source");
        let cs: Vec<_> = servers(&[1, 1]).into_iter().map(full).collect();
        for n in 0..50 {
            assert!(by_source(&b, &cs, n).is_some());
        }
        assert_eq!(by_source(&b, &servers(&[0, 0]), 1), None);
        assert_eq!(by_source(&b, &[], 1), None);
    }

    #[test]
    fn ipv4_mapped_ipv6_hashes_like_ipv4() {
        let b = balancer("source");
        let cs = servers(&[1, 1, 1, 1, 1]);
        for n in 0..300 {
            let mapped = PickKey {
                src: Some(IpAddr::V6(Ipv4Addr::from(n).to_ipv6_mapped())),
                ..PickKey::default()
            };
            assert_eq!(b.pick(&cs, &mapped), by_source(&b, &cs, n));
        }
    }

    #[test]
    fn uri_ignores_the_query_string() {
        let b = balancer("uri");
        let cs = servers(&[1, 1, 1, 1]);
        let mut seen = HashMap::new();
        for n in 0..300 {
            let path = format!("/item/{n}");
            let with_query = format!("{path}?session={}", n * 7);
            let bare = b.pick(
                &cs,
                &PickKey {
                    uri_path: Some(&path),
                    ..PickKey::default()
                },
            );
            let queried = b.pick(
                &cs,
                &PickKey {
                    uri_path: Some(&with_query),
                    ..PickKey::default()
                },
            );
            assert_eq!(bare, queried);
            *seen.entry(bare).or_insert(0) += 1;
        }
        assert_eq!(seen.len(), 4, "paths spread over all servers");
    }

    #[test]
    fn hdr_hashes_the_header_value() {
        let b = balancer("hdr(x-user)");
        let cs = servers(&[1, 1, 1]);
        let pick = |v: &[u8]| {
            b.pick(
                &cs,
                &PickKey {
                    header: Some(v),
                    ..PickKey::default()
                },
            )
        };
        let mut seen = HashMap::new();
        for n in 0..100 {
            let value = format!("user-{n}");
            let server = pick(value.as_bytes());
            assert_eq!(server, pick(value.as_bytes()));
            *seen.entry(server).or_insert(0) += 1;
        }
        assert_eq!(seen.len(), 3);
    }

    #[test]
    fn missing_key_falls_back_to_round_robin() {
        let cs = servers(&[2, 1]);
        for spec in ["source", "uri", "hdr(x-user)"] {
            let b = balancer(spec);
            // A key for another algorithm doesn't count as this one's key.
            let unrelated = PickKey {
                src: (spec != "source").then_some(ip(1)),
                uri_path: (spec != "uri").then_some("/x"),
                header: (spec == "source").then_some(b"v".as_slice()),
            };
            let seq: Vec<_> = (0..6).map(|_| b.pick(&cs, &unrelated).unwrap()).collect();
            assert_eq!(seq, [10, 11, 10, 10, 11, 10], "{spec}");
            // ... which skips full servers like roundrobin does.
            let all_full: Vec<_> = cs.iter().copied().map(full).collect();
            assert_eq!(b.pick(&all_full, &PickKey::default()), None, "{spec}");
        }
    }
}

mod random {
    use super::super::random::pick;
    use super::*;

    fn seeded() -> impl FnMut(u64) -> u64 {
        let mut rng = fastrand::Rng::with_seed(7);
        move |bound| rng.u64(0..bound)
    }

    #[test]
    fn less_loaded_of_two_draws_wins() {
        let mut cs = servers(&[1, 1]);
        cs[1].active = 100;
        let mut draw = seeded();
        let idle = (0..10_000)
            .filter(|_| pick(&cs, &mut draw) == Some(10))
            .count();
        // Only two draws both landing on the busy server pick it: 1/4 of the time.
        assert!((7_000..8_000).contains(&idle), "{idle}");
    }

    #[test]
    fn draws_are_weighted() {
        // Idle servers, so the heavier one (lower (0+1)/w) wins unless both draws miss it.
        let cs = servers(&[1, 3]);
        let mut draw = seeded();
        let light = (0..16_000)
            .filter(|_| pick(&cs, &mut draw) == Some(10))
            .count();
        assert!((700..1_300).contains(&light), "{light}"); // expected 1/16 = 1000
    }

    #[test]
    fn full_servers_are_skipped() {
        let mut cs = servers(&[5, 1, 5]);
        cs[0] = full(cs[0]);
        cs[2] = full(cs[2]);
        let b = balancer("random");
        for _ in 0..100 {
            assert_eq!(b.pick(&cs, &PickKey::default()), Some(11));
        }
        cs[1] = full(cs[1]);
        assert_eq!(b.pick(&cs, &PickKey::default()), None);
        assert_eq!(b.pick(&[], &PickKey::default()), None);
    }

    #[test]
    fn out_of_range_draws_are_tolerated() {
        let cs = servers(&[1, 2]);
        assert!(pick(&cs, |_| u64::MAX).is_some());
    }
}

/// Arbitrary candidate lists: unique indices in shuffled order, weights including 0 and huge
/// values, any activity and limit.
fn arb_candidates(max_len: usize) -> impl Strategy<Value = Vec<Candidate>> {
    let weight = prop_oneof![
        1 => Just(0_u32),
        6 => 1_u32..=256,
        1 => any::<u32>(),
    ];
    let candidate = (weight, 0_u32..8, prop_oneof![Just(0_u32), 0_u32..8]);
    proptest::collection::vec(candidate, 0..=max_len)
        .prop_map(|specs| {
            specs
                .into_iter()
                .enumerate()
                .map(|(i, (weight, active, max))| Candidate {
                    index: 3 * i + 1,
                    weight,
                    active,
                    max,
                })
                .collect::<Vec<_>>()
        })
        .prop_shuffle()
}

fn arb_key() -> impl Strategy<Value = (Option<u32>, Option<String>, Option<Vec<u8>>)> {
    (
        proptest::option::of(any::<u32>()),
        proptest::option::of("[/a-z?=]{0,12}"),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..12)),
    )
}

/// Weights HAProxy accepts, up to 16 servers: the sum stays within one cached schedule. Light
/// and heavy servers are mixed on purpose: that is where plain nginx drifts past one pick.
fn arb_weights() -> impl Strategy<Value = Vec<u32>> {
    let weight = prop_oneof![1_u32..=4, 1_u32..=16, 1_u32..=256];
    proptest::collection::vec(weight, 1..=16)
}

/// Whether every prefix of `picked` (server indices from 10) is within one pick of its share.
fn within_one(weights: &[u32], picked: &[usize]) -> bool {
    let total = u64::from(weights.iter().sum::<u32>());
    let mut seen = vec![0_u64; weights.len()];
    picked.iter().zip(1_u64..).all(|(&index, n)| {
        seen[index - 10] += 1;
        // |count - w * n / total| < 1, in integers.
        seen.iter()
            .zip(weights)
            .all(|(&count, &w)| (count * total).abs_diff(u64::from(w) * n) < total)
    })
}

proptest! {
    #[test]
    fn roundrobin_cycle_gives_exact_shares(weights in arb_weights()) {
        let b = balancer("roundrobin");
        let cs = servers(&weights);
        let total: u32 = weights.iter().sum();
        let c = counts(&picks(&b, &cs, total as usize));
        for (i, &w) in weights.iter().enumerate() {
            prop_assert_eq!(c.get(&(10 + i)).copied().unwrap_or(0), w as usize);
        }
    }

    #[test]
    fn roundrobin_every_prefix_is_within_one_of_its_share(weights in arb_weights()) {
        let b = balancer("roundrobin");
        let total: u32 = weights.iter().sum();
        let picked = picks(&b, &servers(&weights), total as usize * 2);
        prop_assert!(within_one(&weights, &picked), "weights {:?}: {:?}", weights, picked);
    }

    #[test]
    fn static_rr_cycle_gives_exact_shares(weights in arb_weights(), start in 0_usize..1000) {
        let b = balancer("static-rr");
        let cs = servers(&weights);
        picks(&b, &cs, start);
        let total: u32 = weights.iter().sum();
        let c = counts(&picks(&b, &cs, total as usize));
        for (i, &w) in weights.iter().enumerate() {
            prop_assert_eq!(c.get(&(10 + i)).copied().unwrap_or(0), w as usize);
        }
    }

    #[test]
    fn leastconn_never_picks_a_more_loaded_server(cs in arb_candidates(12), rounds in 1_usize..5) {
        let b = balancer("leastconn");
        for _ in 0..rounds {
            let Some(index) = b.pick(&cs, &PickKey::default()) else {
                prop_assert!(!cs.iter().any(|c| c.weight > 0 && c.has_room()));
                continue;
            };
            let chosen = cs.iter().find(|c| c.index == index).unwrap();
            prop_assert!(chosen.weight > 0 && chosen.has_room());
            for other in cs.iter().filter(|c| c.weight > 0 && c.has_room()) {
                let lhs = (u64::from(chosen.active) + 1) * u64::from(other.weight);
                let rhs = (u64::from(other.active) + 1) * u64::from(chosen.weight);
                prop_assert!(lhs <= rhs, "picked {:?} over {:?}", chosen, other);
            }
        }
    }

    #[test]
    fn first_picks_the_lowest_index_with_room(cs in arb_candidates(12)) {
        let expected = cs.iter().filter(|c| c.weight > 0 && c.has_room()).map(|c| c.index).min();
        prop_assert_eq!(balancer("first").pick(&cs, &PickKey::default()), expected);
    }

    #[test]
    fn hashing_is_stable_per_key(cs in arb_candidates(12), (src, path, header) in arb_key()) {
        let key = PickKey {
            src: src.map(|n| IpAddr::V4(Ipv4Addr::from(n))),
            uri_path: path.as_deref(),
            header: header.as_deref(),
        };
        let has_key = [src.is_some(), path.is_some(), header.is_some()];
        for (spec, keyed) in ["source", "uri", "hdr(x-user)"].into_iter().zip(has_key) {
            if !keyed {
                continue; // round-robin fallback: not meant to be stable
            }
            let (one, two) = (balancer(spec), balancer(spec));
            let picked = one.pick(&cs, &key);
            prop_assert_eq!(picked, one.pick(&cs, &key));
            prop_assert_eq!(picked, two.pick(&cs, &key));
            let usable = cs.iter().any(|c| c.weight > 0);
            prop_assert_eq!(picked.is_some(), usable);
            if let Some(index) = picked {
                prop_assert!(cs.iter().any(|c| c.index == index && c.weight > 0));
            }
        }
    }

    #[test]
    fn hashing_spreads_by_weight(weights in proptest::collection::vec(1_u32..=256, 1..=6)) {
        let b = balancer("uri");
        let cs = servers(&weights);
        let keys = 20_000_u32;
        let mut seen = vec![0_u32; weights.len()];
        for n in 0..keys {
            let path = format!("/static/{n}.css");
            let key = PickKey { uri_path: Some(&path), ..PickKey::default() };
            seen[b.pick(&cs, &key).unwrap() - 10] += 1;
        }
        let total = f64::from(weights.iter().sum::<u32>());
        for (&got, &w) in seen.iter().zip(&weights) {
            let p = f64::from(w) / total;
            let expected = f64::from(keys) * p;
            let sigma = (expected * (1.0 - p)).sqrt();
            prop_assert!(
                (f64::from(got) - expected).abs() <= 6.0 * sigma + 1.0,
                "weights {:?}: got {:?}", weights, seen
            );
        }
    }

    #[test]
    fn nothing_panics_and_answers_are_valid(
        cs in arb_candidates(24),
        (src, path, header) in arb_key(),
        rounds in 1_usize..4,
    ) {
        let key = PickKey {
            src: src.map(|n| IpAddr::V4(Ipv4Addr::from(n))),
            uri_path: path.as_deref(),
            header: header.as_deref(),
        };
        let open = cs.iter().any(|c| c.weight > 0 && c.has_room());
        let usable = cs.iter().any(|c| c.weight > 0);
        for spec in ALL {
            let b = balancer(spec);
            let hashed = match spec {
                "source" => src.is_some(),
                "uri" => path.is_some(),
                "hdr(x-user)" => header.is_some(),
                _ => false,
            };
            for _ in 0..rounds {
                let picked = b.pick(&cs, &key);
                prop_assert_eq!(picked.is_some(), if hashed { usable } else { open }, "{}", spec);
                if let Some(index) = picked {
                    let c = cs.iter().find(|c| c.index == index);
                    prop_assert!(c.is_some_and(|c| c.weight > 0), "{}", spec);
                    prop_assert!(hashed || c.is_some_and(Candidate::has_room), "{} picked a full server", spec);
                }
            }
        }
    }
}
