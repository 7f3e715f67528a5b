//! Packet loss on both directions of a node's link, the soak run's "10 % loss on an L7 node's
//! link": [`faults::packet_loss`](crate::faults::packet_loss) drops a share of what leaves the
//! node, and a second nftables table here drops the same share of what arrives, so that a
//! request, its answer, an advert and an ack are each at the same risk.

use crate::{
    faults::{apply_ruleset, clear_packet_loss, packet_loss, random_share},
    netns::Netns,
};

/// The table of the inbound rule, beside `faults`' own table for the outbound one.
const TABLE: &str = "fulcrum_lab_loss_in";

/// Drops `percent` % of the packets leaving and of those arriving through `ifname` in `ns`, at
/// random (replacing any earlier loss there).
pub fn link_loss(ns: &Netns, ifname: &str, percent: u8) {
    packet_loss(ns, ifname, percent);
    let _ = ns.exec(&["nft", "delete", "table", "inet", TABLE]);
    let share = random_share(percent);
    let ruleset = format!(
        "table inet {TABLE} {{\n\
         \tchain lab_input {{\n\
         \t\ttype filter hook prerouting priority -300; policy accept;\n\
         \t\tiifname \"{ifname}\" {share}drop\n\
         \t}}\n\
         }}\n"
    );
    apply_ruleset(
        ns,
        &ruleset,
        &format!("{percent}% inbound loss on {ifname}"),
    );
}

/// Removes what [`link_loss`] put in `ns` (nothing there is fine).
pub fn clear_link_loss(ns: &Netns) {
    clear_packet_loss(ns);
    let _ = ns.exec(&["nft", "delete", "table", "inet", TABLE]);
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{clear_link_loss, link_loss};
    use crate::{
        faults::can_drop_packets,
        netns::{Netns, can_use_netns, veth},
    };

    #[test]
    fn link_loss_drops_both_ways_and_clears() {
        if !can_use_netns() || !can_drop_packets() {
            return;
        }
        let (a, b) = (Netns::new("lla"), Netns::new("llb"));
        veth(&a, "eth0", "10.39.1.1/24", &b, "eth0", "10.39.1.2/24");
        let ruleset =
            || String::from_utf8_lossy(&a.exec(&["nft", "list", "ruleset"]).stdout).into_owned();
        link_loss(&a, "eth0", 100);
        assert!(ruleset().contains("iifname \"eth0\" drop"), "{}", ruleset());
        assert!(ruleset().contains("oifname \"eth0\" drop"), "{}", ruleset());
        // B's SYNs arrive at A and are dropped there: the inbound half.
        assert!(!b.reachable("10.39.1.1".parse().unwrap(), Duration::from_millis(300)));
        clear_link_loss(&a);
        assert!(!ruleset().contains("drop"), "{}", ruleset());
        assert!(b.reachable("10.39.1.1".parse().unwrap(), Duration::from_secs(2)));
    }
}
