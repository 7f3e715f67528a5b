//! The handshake between two real ends, and against fake peers that misbehave.

use std::time::Duration;

use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, duplex};

use super::*;

const SECRET: &[u8] = b"correct horse battery staple";
const TIMEOUT: Duration = Duration::from_secs(10);

/// The challenges of the node `name`, for the whole test (in `join!` with the handshake).
fn node(name: &str) -> &'static OwnChallenges {
    Box::leak(Box::new(OwnChallenges::of(name)))
}

/// Runs both real ends over one in-memory connection.
async fn both_ends(
    connecting_secret: &[u8],
    accepting_secret: &[u8],
) -> (
    (DuplexStream, Result<(), AuthError>),
    (DuplexStream, Result<(), AuthError>),
) {
    let (mut a, mut b) = duplex(1024);
    let (ra, rb) = tokio::join!(
        authenticate(
            &mut a,
            connecting_secret,
            Side::Connecting,
            TIMEOUT,
            node("a")
        ),
        authenticate(
            &mut b,
            accepting_secret,
            Side::Accepting,
            TIMEOUT,
            node("b")
        ),
    );
    ((a, ra), (b, rb))
}

/// The response a peer holding `secret` makes as `responder`.
fn response(secret: &[u8], responder: Side, answered: &Challenge, own: &Challenge) -> AuthFrame {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut tag = [0; TAG_LEN];
    tag.copy_from_slice(hmac::sign(&key, &transcript(responder, answered, own)).as_ref());
    AuthFrame::Response(tag)
}

fn greeting(side: Side, challenge: Challenge) -> AuthFrame {
    AuthFrame::Greeting {
        version: VERSION,
        side,
        challenge,
    }
}

/// A fake peer reads our greeting and gives back the challenge in it.
async fn their_challenge(fake: &mut DuplexStream) -> Challenge {
    match read_frame(fake).await {
        Ok(AuthFrame::Greeting { challenge, .. }) => challenge,
        other => panic!("expected a Greeting, got {other:?}"),
    }
}

async fn fake_send(fake: &mut DuplexStream, frame: AuthFrame) {
    send(fake, &frame).await.expect("the fake peer sends");
}

/// Asserts that `result` is an error matching `pattern`.
macro_rules! assert_err {
    ($result:expr, $pattern:pat) => {{
        let result = &$result;
        assert!(matches!(result, Err($pattern)), "{result:?}");
    }};
}

/// Asserts that our end failed with `AuthError::$why` and told the peer `Refusal::$why`.
macro_rules! assert_refused {
    ($result:expr, $told:expr, $why:ident) => {{
        let told = &$told;
        assert_err!($result, AuthError::$why);
        assert!(
            matches!(told, Ok(AuthFrame::Refused(Refusal::$why))),
            "{told:?}"
        );
    }};
}

/// Our connecting end against the fake peer `peer`, run together over one in-memory
/// connection that stays open until both are done; returns our result and the peer's.
async fn against_fake<T>(
    peer: impl AsyncFnOnce(&mut DuplexStream) -> T,
) -> (Result<(), AuthError>, T) {
    let (mut ours, mut fake) = duplex(1024);
    tokio::join!(
        authenticate(&mut ours, SECRET, Side::Connecting, TIMEOUT, node("ours")),
        peer(&mut fake)
    )
}

/// The fake peer, accepting: reads our greeting and answers with its own, made with a fixed
/// challenge; returns our challenge and its own.
async fn greet_back(fake: &mut DuplexStream) -> (Challenge, Challenge) {
    let theirs = their_challenge(fake).await;
    let own = [7; CHALLENGE_LEN];
    fake_send(fake, greeting(Side::Accepting, own)).await;
    (theirs, own)
}

// Input: the same secret on both ends. Output: both authenticated, and the stream is left
// exactly after the handshake both ways.
#[tokio::test]
async fn the_right_secret_authenticates_both_ways() {
    let ((mut a, ra), (mut b, rb)) = both_ends(SECRET, SECRET).await;
    assert!(ra.is_ok(), "{ra:?}");
    assert!(rb.is_ok(), "{rb:?}");
    a.write_all(b"ping").await.expect("write");
    b.write_all(b"pong").await.expect("write");
    let mut got = [0; 4];
    b.read_exact(&mut got).await.expect("read");
    assert_eq!(&got, b"ping");
    a.read_exact(&mut got).await.expect("read");
    assert_eq!(&got, b"pong");
}

// Input: different secrets. Output: WrongSecret on both ends.
#[tokio::test]
async fn a_wrong_secret_is_refused_on_both_sides() {
    let ((_, ra), (_, rb)) = both_ends(SECRET, b"another secret").await;
    assert_err!(ra, AuthError::WrongSecret);
    assert_err!(rb, AuthError::WrongSecret);
}

// Input: a peer whose response is made with another secret.
// Output: WrongSecret here, and an explicit Refused(WrongSecret) frame sent to the peer.
#[tokio::test]
async fn the_side_that_finds_a_wrong_secret_tells_the_other() {
    let (result, told) = against_fake(async |fake| {
        let (theirs, own) = greet_back(fake).await;
        let wrong = response(b"wrong", Side::Accepting, &theirs, &own);
        fake_send(fake, wrong).await;
        let their_response = read_frame(fake).await;
        assert!(matches!(their_response, Ok(AuthFrame::Response(_))));
        read_frame(fake).await
    })
    .await;
    assert_refused!(result, told, WrongSecret);
}

// Input: a peer that accepts our response's form but refuses it as a wrong secret.
// Output: WrongSecret here too, though our own check of the peer passed.
#[tokio::test]
async fn a_refusal_from_the_peer_is_reported_as_a_wrong_secret() {
    let (result, ()) = against_fake(async |fake| {
        let (theirs, own) = greet_back(fake).await;
        fake_send(fake, response(SECRET, Side::Accepting, &theirs, &own)).await;
        fake_send(fake, AuthFrame::Refused(Refusal::WrongSecret)).await;
    })
    .await;
    assert_err!(result, AuthError::WrongSecret);
}

// Input: a peer that echoes our challenge as its own.
// Output: Reflected, and Refused(Reflected) sent before any response of ours.
#[tokio::test]
async fn a_reflected_challenge_is_refused() {
    let (result, told) = against_fake(async |fake| {
        let theirs = their_challenge(fake).await;
        fake_send(fake, greeting(Side::Accepting, theirs)).await;
        read_frame(fake).await
    })
    .await;
    assert_refused!(result, told, Reflected);
}

// Input: an attacker without the secret opens two connections to an accepting node and
// replays, on the first, the response the node made on the second for the first's challenge.
// Output: WrongSecret: the replayed response names the wrong side and other challenges.
#[tokio::test]
async fn a_response_replayed_from_another_connection_is_refused() {
    let (mut node1, mut attacker1) = duplex(1024);
    let (mut node2, mut attacker2) = duplex(1024);
    let attack = async {
        let challenge1 = their_challenge(&mut attacker1).await;
        fake_send(
            &mut attacker1,
            greeting(Side::Connecting, [1; CHALLENGE_LEN]),
        )
        .await;
        let _challenge2 = their_challenge(&mut attacker2).await;
        fake_send(&mut attacker2, greeting(Side::Connecting, challenge1)).await;
        let Ok(answer) = read_frame(&mut attacker2).await else {
            panic!("the second connection answers");
        };
        drop(attacker2);
        // Connection 1 sent its own response first; then replay connection 2's.
        assert!(matches!(
            read_frame(&mut attacker1).await,
            Ok(AuthFrame::Response(_))
        ));
        fake_send(&mut attacker1, answer).await;
        read_frame(&mut attacker1).await
    };
    let (r1, r2, told) = tokio::join!(
        authenticate(&mut node1, SECRET, Side::Accepting, TIMEOUT, node("node1")),
        authenticate(&mut node2, SECRET, Side::Accepting, TIMEOUT, node("node2")),
        attack,
    );
    assert_refused!(r1, told, WrongSecret);
    assert!(r2.is_err());
}

// Input: one node with two handshakes at once, one dialing out and one accepting (the middle
// node of a sync set of three, or two sets or volumes of one node sharing a secret); an attacker without the secret at the far end of both sends
// each connection the challenge the node made on the other, and passes the node's responses
// across. Output: a connection given the other's challenge is refused as Reflected, and
// neither authenticates. (The node answered its own challenges, and both handshakes verified:
// the attacker was in as a peer.)
#[tokio::test]
async fn a_node_cannot_be_made_to_answer_itself_across_two_connections() {
    let (mut dialed, mut attacker1) = duplex(1024);
    let (mut accepted, mut attacker2) = duplex(1024);
    let attack = async move {
        let challenge1 = their_challenge(&mut attacker1).await;
        let challenge2 = their_challenge(&mut attacker2).await;
        fake_send(&mut attacker1, greeting(Side::Accepting, challenge2)).await;
        fake_send(&mut attacker2, greeting(Side::Connecting, challenge1)).await;
        let response1 = read_frame(&mut attacker1).await;
        let response2 = read_frame(&mut attacker2).await;
        if let (Ok(r1 @ AuthFrame::Response(_)), Ok(r2 @ AuthFrame::Response(_))) =
            (response1, response2)
        {
            fake_send(&mut attacker1, r2).await;
            fake_send(&mut attacker2, r1).await;
            fake_send(&mut attacker1, AuthFrame::Accepted).await;
            fake_send(&mut attacker2, AuthFrame::Accepted).await;
        }
    };
    // Two sets (or volumes) of one node, each with its own handle on the node's challenges.
    let (set_x, set_y) = (node("middle"), node("middle"));
    let label = b"fulcrum-sync v1";
    let (r1, r2, ()) = tokio::join!(
        authenticate_labelled(&mut dialed, SECRET, label, Side::Connecting, TIMEOUT, set_x),
        authenticate_labelled(
            &mut accepted,
            SECRET,
            label,
            Side::Accepting,
            TIMEOUT,
            set_y
        ),
        attack,
    );
    let reflected = |r: &Result<(), AuthError>| matches!(r, Err(AuthError::Reflected));
    assert!(reflected(&r1) || reflected(&r2), "{r1:?}, {r2:?}");
    assert!(r1.is_err() && r2.is_err(), "{r1:?}, {r2:?}");
}

// Input: two connecting ends. Output: SameSide on both.
#[tokio::test]
async fn both_ends_on_the_same_side_are_refused() {
    let (mut a, mut b) = duplex(1024);
    let (ra, rb) = tokio::join!(
        authenticate(&mut a, SECRET, Side::Connecting, TIMEOUT, node("a")),
        authenticate(&mut b, SECRET, Side::Connecting, TIMEOUT, node("b")),
    );
    assert!(
        matches!(ra, Err(AuthError::SameSide(Side::Connecting))),
        "{ra:?}"
    );
    assert!(
        matches!(rb, Err(AuthError::SameSide(Side::Connecting))),
        "{rb:?}"
    );
}

// Input: a greeting of a version after ours. Output: VersionMismatch, and the peer told.
#[tokio::test]
async fn another_version_is_a_clear_error() {
    let (result, told) = against_fake(async |fake| {
        their_challenge(fake).await;
        let newer = AuthFrame::Greeting {
            version: VERSION + 1,
            side: Side::Accepting,
            challenge: [3; CHALLENGE_LEN],
        };
        fake_send(fake, newer).await;
        read_frame(fake).await
    })
    .await;
    assert!(
        matches!(
            result,
            Err(AuthError::VersionMismatch { ours, theirs })
                if ours == VERSION && theirs == VERSION + 1
        ),
        "{result:?}"
    );
    assert!(matches!(
        told,
        Ok(AuthFrame::Refused(Refusal::VersionMismatch))
    ));
}

/// What our end makes of a peer that writes `bytes` and then waits.
async fn against_bytes(bytes: &[u8]) -> Result<(), AuthError> {
    let (mut ours, mut fake) = duplex(1024);
    fake.write_all(bytes).await.expect("write");
    authenticate(&mut ours, SECRET, Side::Accepting, TIMEOUT, node("ours")).await
}

// Input: an HTTP request. Output: NotFulcrum, from the first two octets.
#[tokio::test]
async fn a_peer_that_is_not_fulcrum_is_told_apart() {
    let result = against_bytes(b"GET / HTTP/1.1\r\nHost: lb1\r\n\r\n").await;
    assert_err!(
        result,
        AuthError::NotFulcrum {
            magic: 0x4745,
            protocol: "volume"
        }
    );
    let message = result.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(message.contains("the Fulcrum volume protocol"), "{message}");
}

// Input: an HTTP request to the sync's handshake (its own label). Output: the error names the
// sync protocol, not the volume's; the labels' names.
#[tokio::test]
async fn a_labelled_handshake_names_its_protocol() {
    let (mut ours, mut fake) = tokio::io::duplex(4096);
    fake.write_all(b"GET / HTTP/1.1\r\n\r\n")
        .await
        .expect("write");
    let result = authenticate_labelled(
        &mut ours,
        SECRET,
        b"fulcrum-sync v1",
        Side::Accepting,
        TIMEOUT,
        node("ours"),
    )
    .await;
    let message = result.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        message.contains("does not speak the Fulcrum sync protocol"),
        "{message}"
    );
    assert_eq!(protocol_name(b"fulcrum-volume v1"), "volume");
    assert_eq!(protocol_name(b"fulcrum-sync v1"), "sync");
    assert_eq!(protocol_name(b"other"), "other");
}

// Input: a header announcing 4 GiB. Output: refused from the header, nothing buffered.
#[tokio::test]
async fn a_huge_frame_is_refused_before_reading_it() {
    let result = against_bytes(&[0xF1, 0xC5, 0x01, 0, 0xFF, 0xFF, 0xFF, 0xFF]).await;
    assert_err!(result, AuthError::Malformed(WireError::TooLarge { .. }));
}

// Input: a message frame instead of a greeting. Output: refused as malformed.
#[tokio::test]
async fn a_message_before_the_handshake_is_refused() {
    let result = against_bytes(&[0xF1, 0xC5, 0x12, 0, 0, 0, 0, 0]).await;
    assert_err!(result, AuthError::Malformed(WireError::UnknownType(0x12)));
}

// Input: a peer that reads our greeting and hangs up. Output: Closed.
#[tokio::test]
async fn a_peer_that_hangs_up_is_reported() {
    let (mut ours, mut fake) = duplex(1024);
    let peer = async move {
        their_challenge(&mut fake).await;
    };
    let (result, ()) = tokio::join!(
        authenticate(&mut ours, SECRET, Side::Connecting, TIMEOUT, node("ours")),
        peer
    );
    assert_err!(result, AuthError::Closed);
    assert!(result.as_ref().is_err_and(|e| !e.is_rejection()));
}

// Input: a peer that never answers. Output: Timeout.
// (Real time: this crate's tokio has no test-util, so no start_paused; the peer is silent,
// so only the duration of the test depends on the clock.)
#[tokio::test]
async fn a_silent_peer_times_out() {
    let (mut ours, _silent) = duplex(1024);
    let limit = Duration::from_millis(50);
    let result = authenticate(&mut ours, SECRET, Side::Connecting, limit, node("ours")).await;
    assert!(
        matches!(result, Err(AuthError::Timeout(d)) if d == limit),
        "{result:?}"
    );
}

#[tokio::test]
async fn an_empty_secret_is_refused_locally() {
    let (_, ra) = both_ends(b"", b"").await.0;
    assert_err!(ra, AuthError::EmptySecret);
}

/// Runs `future` to completion on a new single-threaded runtime (for the proptests).
fn block_on<T>(future: impl Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime")
        .block_on(future)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    // Input: any bytes from the peer, then end of stream. Output: an error, never success
    // and never a panic.
    #[test]
    fn garbage_is_refused_without_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let result = block_on(async {
            let (mut ours, mut fake) = duplex(4096);
            fake.write_all(&bytes).await.expect("write");
            drop(fake);
            authenticate(&mut ours, SECRET, Side::Accepting, TIMEOUT, node("ours")).await
        });
        prop_assert!(result.is_err());
    }

    // Input: a valid greeting followed by any bytes. Output: an error, never success.
    #[test]
    fn garbage_after_a_greeting_is_refused(bytes in prop::collection::vec(any::<u8>(), 0..100)) {
        let result = block_on(async {
            let (mut ours, mut fake) = duplex(4096);
            fake_send(&mut fake, greeting(Side::Connecting, [9; CHALLENGE_LEN])).await;
            fake.write_all(&bytes).await.expect("write");
            drop(fake);
            authenticate(&mut ours, SECRET, Side::Accepting, TIMEOUT, node("ours")).await
        });
        prop_assert!(result.is_err());
    }
}
