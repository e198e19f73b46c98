use super::*;

/// Settings without a reserve (public calls may use the whole limit) and without a waiting
/// room, as the limit's own tests want it.
fn settings(adaptive: bool, min: u32, max: u32) -> Admission {
    Admission {
        adaptive,
        min,
        max,
        internal_reserve_percent: 0,
        max_queued: 0,
        queue_timeout: Duration::from_millis(500),
    }
}

fn adaptive(min: u32, max: u32) -> Limiter {
    Limiter::new(settings(true, min, max), 2)
}

/// A fixed limit of `max` with a waiting room of `queued`.
fn fixed_with_room(max: u32, queued: u32, now: Instant) -> Limiter {
    Limiter::new_at(
        Admission {
            max_queued: queued,
            ..settings(false, 1, max)
        },
        2,
        now,
    )
}

fn admitted_now(limiter: &Limiter, class: Class) -> bool {
    matches!(
        limiter.admit_at(class, 0, None, Instant::now()),
        Ok(Admit::Now)
    )
}

fn answered(elapsed: Duration) -> Option<Sample> {
    Some(Sample {
        elapsed,
        answered: true,
    })
}

/// Runs `windows` windows of `calls` calls each at `concurrency`, each taking `rtt`.
fn drive(limiter: &Limiter, windows: u32, concurrency: u32, rtt: Duration, at: &mut Instant) {
    for _ in 0..windows {
        for _ in 0..WINDOW_CALLS {
            let admitted = (0..concurrency)
                .filter(|_| admitted_now(limiter, Class::Public))
                .count();
            *at += MIN_WINDOW;
            for _ in 0..admitted {
                limiter.finished_at(0, answered(rtt), *at);
            }
        }
    }
}

fn wait(result: Result<Admit, Refusal>) -> Ticket {
    match result {
        Ok(Admit::Wait(ticket)) => ticket,
        other => panic!("expected to wait, got {other:?}"),
    }
}

/// Whether the waiting call was handed a slot (true), is still waiting (false), or was pushed
/// out (panics).
fn handed(ticket: &mut Ticket) -> bool {
    match ticket.rx.try_recv() {
        Ok(()) => true,
        Err(oneshot::error::TryRecvError::Empty) => false,
        Err(oneshot::error::TryRecvError::Closed) => panic!("pushed out"),
    }
}

fn pushed_out(ticket: &mut Ticket) -> bool {
    matches!(
        ticket.rx.try_recv(),
        Err(oneshot::error::TryRecvError::Closed)
    )
}

#[test]
fn the_limit_grows_while_latency_holds_and_shrinks_when_it_rises() {
    let limiter = adaptive(4, 200);
    let mut at = Instant::now();
    let start = limiter.limit();
    assert_eq!(start, 64);
    // Saturated at the no-queue latency: the limit grows.
    drive(&limiter, 30, 500, Duration::from_millis(10), &mut at);
    let grown = limiter.limit();
    assert!(grown > start + start / 2, "{start} -> {grown}");
    // Latency triples (a queue formed): the limit comes down.
    drive(&limiter, 10, 500, Duration::from_millis(30), &mut at);
    let shrunk = limiter.limit();
    assert!(shrunk < grown / 2, "{grown} -> {shrunk}");
    // An overload that lasts (hundreds of windows) does not become the new normal.
    drive(&limiter, 30, 500, Duration::from_millis(30), &mut at);
    let held = limiter.limit();
    assert!(held < grown / 2, "{grown} -> {held}");
    // Never below the floor, never above the ceiling.
    let floored = adaptive(12, 200);
    drive(&floored, 30, 500, Duration::from_millis(10), &mut at);
    drive(&floored, 50, 500, Duration::from_millis(300), &mut at);
    assert_eq!(floored.limit(), 12);
    let capped = adaptive(4, 20);
    drive(&capped, 100, 500, Duration::from_millis(10), &mut at);
    assert_eq!(capped.limit(), 20);
}

/// A server like the embedded fleet on two cores: its no-queue latency is 10 ms and every
/// call admitted beside another adds 4 ms (40 ms at 8 calls), while throughput still grows
/// a little with each.
fn crowded_rtt(admitted: usize) -> Duration {
    let others = u32::try_from(admitted.saturating_sub(1)).unwrap_or(u32::MAX);
    Duration::from_millis(10) + Duration::from_millis(4) * others
}

#[test]
fn a_short_queue_is_not_taken_for_an_overload() {
    // One caller first (the no-queue latency), then a flood of 500. The latency ratio alone
    // (1.5×) would hold the limit near 6 calls; the queue allowance lets it settle where
    // about four calls wait, near 10 — far from the flood, and above what the ratio allows.
    let limiter = adaptive(1, 1_000);
    let mut at = Instant::now();
    let round = |callers: u32, at: &mut Instant| {
        let admitted = (0..callers)
            .filter(|_| admitted_now(&limiter, Class::Public))
            .count();
        *at += MIN_WINDOW;
        let rtt = crowded_rtt(admitted);
        for _ in 0..admitted {
            limiter.finished_at(0, answered(rtt), *at);
        }
    };
    for _ in 0..300 {
        round(1, &mut at);
    }
    for _ in 0..100 {
        round(500, &mut at);
    }
    let settled = limiter.limit();
    assert!(
        (8..=13).contains(&settled),
        "settled at {settled} (queue allowance {QUEUE_ALLOWANCE})"
    );
}

#[test]
fn the_pushback_grows_with_the_crowd_refused_and_goes_stale() {
    let limiter = adaptive(4, 16);
    let mut at = Instant::now();
    assert_eq!(limiter.pushback_at(at), FIRST_PUSHBACK, "before any window");
    // Within the limit: nothing refused, so about one call's latency.
    drive(&limiter, 5, 8, Duration::from_millis(20), &mut at);
    let calm = limiter.pushback_at(at);
    assert!(
        (Duration::from_millis(19)..=Duration::from_millis(21)).contains(&calm),
        "{calm:?}"
    );
    // Five hundred callers at a limit of 16: tens of refusals per completed call.
    drive(&limiter, 5, 500, Duration::from_millis(20), &mut at);
    let crowded = limiter.pushback_at(at);
    assert!(crowded > calm * 20, "{calm:?} -> {crowded:?}");
    assert!(crowded <= MAX_PUSHBACK);
    // Nothing admitted for longer than a window: the crowd's pushback no longer holds.
    assert_eq!(
        limiter.pushback_at(at + STALE_AFTER + Duration::from_millis(1)),
        FIRST_PUSHBACK
    );
    // The crowd gone, the pushback is one call's latency again.
    drive(&limiter, 2, 4, Duration::from_millis(20), &mut at);
    assert!(
        limiter.pushback_at(at) < calm * 2,
        "{:?}",
        limiter.pushback_at(at)
    );
}

#[test]
fn new_limits_apply_while_running() {
    let limiter = adaptive(4, 200);
    limiter.reconfigure(settings(false, 1, 3));
    assert_eq!(limiter.limit(), 3);
    let admitted = (0..10)
        .filter(|_| admitted_now(&limiter, Class::Public))
        .count();
    assert_eq!(admitted, 3);
    limiter.reconfigure(Admission {
        internal_reserve_percent: 20,
        ..settings(true, 8, 100)
    });
    assert_eq!(
        limiter.limit(),
        100,
        "adaptive again: from the new floor (capped)"
    );
}

#[test]
fn an_idle_server_does_not_raise_its_limit() {
    let limiter = adaptive(4, 200);
    let mut at = Instant::now();
    drive(&limiter, 50, 2, Duration::from_millis(10), &mut at);
    assert_eq!(limiter.limit(), 64);
}

#[test]
fn a_limit_far_above_what_is_in_flight_still_comes_down_when_calls_slow() {
    // Twenty calls at a time (under half the starting 64), each ten times slower than the
    // first windows: the limit must come down before a crowd arrives, not wait to be filled.
    let limiter = adaptive(4, 200);
    let mut at = Instant::now();
    drive(&limiter, 5, 20, Duration::from_millis(10), &mut at);
    assert_eq!(limiter.limit(), 64);
    drive(&limiter, 30, 20, Duration::from_millis(100), &mut at);
    let limit = limiter.limit();
    assert!(limit < 20, "{limit}");
}

#[test]
fn internal_calls_keep_a_reserve_public_ones_cannot_take() {
    let limiter = Limiter::new(
        Admission {
            internal_reserve_percent: 20,
            ..settings(false, 1, 10)
        },
        1,
    );
    let public = (0..20)
        .filter(|_| admitted_now(&limiter, Class::Public))
        .count();
    assert_eq!(public, 8);
    let internal = (0..20)
        .filter(|_| admitted_now(&limiter, Class::Internal))
        .count();
    assert_eq!(internal, 2);
    let now = Instant::now();
    assert_eq!(
        limiter.admit_at(Class::Internal, 0, None, now).unwrap_err(),
        Refusal::Limit
    );
    limiter.finished_at(0, answered(Duration::from_millis(1)), now);
    assert!(!admitted_now(&limiter, Class::Public));
    assert!(admitted_now(&limiter, Class::Internal));
}

#[test]
fn internal_calls_pass_the_adaptive_limit_up_to_the_ceiling_and_never_wait() {
    let limiter = Limiter::new(
        Admission {
            internal_reserve_percent: 20,
            max_queued: 100,
            ..settings(true, 1, 50)
        },
        1,
    );
    assert_eq!(limiter.limit(), 16);
    let public = (0..12)
        .filter(|_| admitted_now(&limiter, Class::Public))
        .count();
    assert_eq!(public, 12, "80% of the adaptive limit");
    let internal = (0..100)
        .filter(|_| admitted_now(&limiter, Class::Internal))
        .count();
    assert_eq!(internal, 38, "internal calls up to the ceiling");
    let now = Instant::now();
    assert_eq!(
        limiter.admit_at(Class::Internal, 0, None, now).unwrap_err(),
        Refusal::Limit,
        "an internal call at the ceiling is refused, not kept waiting"
    );
    wait(limiter.admit_at(Class::Public, 0, None, now));
}

#[test]
fn past_the_limit_public_calls_wait_for_the_slots_that_free() {
    let now = Instant::now();
    let limiter = fixed_with_room(2, 10, now);
    assert!(admitted_now(&limiter, Class::Public));
    assert!(admitted_now(&limiter, Class::Public));
    let mut first = wait(limiter.admit_at(Class::Public, 0, None, now));
    let mut second = wait(limiter.admit_at(Class::Public, 0, None, now));
    assert_eq!(first.max_wait, Duration::from_millis(500));
    assert_eq!(limiter.waiting(), 2);
    assert!(!handed(&mut first) && !handed(&mut second));
    // A burst (the room was empty moments ago): oldest first.
    limiter.finished_at(0, answered(Duration::from_millis(5)), now);
    assert!(handed(&mut first));
    assert!(!handed(&mut second));
    assert_eq!(limiter.waiting(), 1);
    // The second gives up: its place is freed, it holds no slot.
    assert!(!limiter.leave(0, second.id, &mut second.rx, now));
    assert_eq!(limiter.waiting(), 0);
    // Two in flight (the first took the freed slot): a new call waits again.
    wait(limiter.admit_at(Class::Public, 0, None, now));
}

#[test]
fn a_full_waiting_room_refuses_at_once() {
    let now = Instant::now();
    let limiter = fixed_with_room(1, 2, now);
    assert!(admitted_now(&limiter, Class::Public));
    wait(limiter.admit_at(Class::Public, 0, None, now));
    wait(limiter.admit_at(Class::Public, 0, None, now));
    assert_eq!(
        limiter.admit_at(Class::Public, 0, None, now).unwrap_err(),
        Refusal::Limit
    );
    // Without a room, past the limit is refused at once.
    let no_room = fixed_with_room(1, 0, now);
    assert!(admitted_now(&no_room, Class::Public));
    assert_eq!(
        no_room.admit_at(Class::Public, 0, None, now).unwrap_err(),
        Refusal::Limit
    );
}

#[test]
fn a_standing_queue_is_served_newest_first() {
    let t0 = Instant::now();
    let limiter = fixed_with_room(1, 10, t0);
    assert!(admitted_now(&limiter, Class::Public));
    let mut tickets: Vec<Ticket> = (0..3)
        .map(|_| wait(limiter.admit_at(Class::Public, 0, None, t0)))
        .collect();
    // The room has not been empty since t0: past STANDING_QUEUE it is an overload.
    let later = t0 + STANDING_QUEUE + Duration::from_millis(1);
    limiter.finished_at(0, answered(Duration::from_millis(5)), later);
    assert!(handed(&mut tickets[2]), "the newest got the slot");
    assert!(!handed(&mut tickets[0]) && !handed(&mut tickets[1]));
}

#[test]
fn a_flood_of_one_method_cannot_keep_another_out() {
    let now = Instant::now();
    let limiter = fixed_with_room(2, 3, now);
    // Method 0 (a login flood) holds both slots and fills the room.
    assert!(admitted_now(&limiter, Class::Public));
    assert!(admitted_now(&limiter, Class::Public));
    let mut flood: Vec<Ticket> = (0..3)
        .map(|_| wait(limiter.admit_at(Class::Public, 0, None, now)))
        .collect();
    assert_eq!(
        limiter.admit_at(Class::Public, 0, None, now).unwrap_err(),
        Refusal::Limit,
        "more of the flood is refused at once"
    );
    // Method 1 (ValidateToken) takes the place of the flood's oldest waiting call...
    let mut other = wait(limiter.admit_at(Class::Public, 1, None, now));
    assert!(pushed_out(&mut flood[0]));
    // ...and gets the next slot, though the flood's calls waited longer.
    limiter.finished_at(0, answered(Duration::from_millis(5)), now);
    assert!(handed(&mut other));
    assert!(!handed(&mut flood[1]) && !handed(&mut flood[2]));
    // Calls of unknown methods share one bucket (the last index), whatever they are.
    let unknown = wait(limiter.admit_at(Class::Public, 99, None, now));
    assert_eq!(unknown.method, 2);
}

#[test]
fn a_waiting_call_that_leaves_after_being_handed_a_slot_keeps_it() {
    let now = Instant::now();
    let limiter = fixed_with_room(1, 4, now);
    assert!(admitted_now(&limiter, Class::Public));
    let mut ticket = wait(limiter.admit_at(Class::Public, 0, None, now));
    limiter.finished_at(0, answered(Duration::from_millis(5)), now);
    // Its wait ran out just as the slot came: it is the caller's.
    assert!(limiter.leave(0, ticket.id, &mut ticket.rx, now));
    assert!(!admitted_now(&limiter, Class::Public), "the slot is taken");
    limiter.finished_at(0, None, now);
    assert!(admitted_now(&limiter, Class::Public));
}

#[test]
fn the_wait_leaves_time_for_the_call_within_its_deadline() {
    let mut at = Instant::now();
    let limiter = Limiter::new_at(
        Admission {
            max_queued: 10,
            ..settings(false, 1, 4)
        },
        1,
        at,
    );
    drive(&limiter, 1, 4, Duration::from_millis(100), &mut at);
    for _ in 0..4 {
        assert!(matches!(
            limiter.admit_at(Class::Public, 0, None, at),
            Ok(Admit::Now)
        ));
    }
    let ticket = wait(limiter.admit_at(Class::Public, 0, Some(Duration::from_millis(300)), at));
    assert_eq!(ticket.max_wait, Duration::from_millis(200));
    assert_eq!(
        limiter
            .admit_at(Class::Public, 0, Some(Duration::from_millis(100)), at)
            .unwrap_err(),
        Refusal::Limit,
        "no time left to wait"
    );
}

#[test]
fn a_deadline_shorter_than_the_fastest_call_is_refused() {
    let limiter = adaptive(4, 100);
    let mut at = Instant::now();
    // No window closed yet: nothing is known, every deadline is tried.
    assert!(matches!(
        limiter.admit_at(Class::Public, 0, Some(Duration::from_micros(1)), at),
        Ok(Admit::Now)
    ));
    drive(&limiter, 1, 4, Duration::from_millis(5), &mut at);
    assert_eq!(
        limiter
            .admit_at(Class::Public, 0, Some(Duration::from_millis(2)), at)
            .unwrap_err(),
        Refusal::Deadline
    );
    assert!(matches!(
        limiter.admit_at(Class::Public, 0, Some(Duration::from_millis(50)), at),
        Ok(Admit::Now)
    ));
}

/// The latch seen after a 5 s store stall: every call of a window ended at its callers'
/// deadline, that became the fastest call, and every later call with that deadline was refused
/// — so no call was admitted, and no window closed to correct it.
#[test]
fn a_stall_past_the_callers_deadline_does_not_latch_the_deadline_check() {
    let limiter = adaptive(4, 100);
    let mut at = Instant::now();
    let deadline = Some(Duration::from_secs(1));
    drive(&limiter, 3, 4, Duration::from_millis(5), &mut at);
    // The stall: a window of calls whose callers all gave up at their deadline.
    let stalled: usize = (0..12)
        .filter(|_| {
            matches!(
                limiter.admit_at(Class::Public, 0, deadline, at),
                Ok(Admit::Now)
            )
        })
        .count();
    assert_eq!(stalled, 12);
    // The server sees a little more than the deadline go by before the callers' cancels.
    at += Duration::from_millis(1010);
    for _ in 0..stalled {
        let cut_off = Sample {
            elapsed: Duration::from_millis(1010),
            answered: false,
        };
        limiter.finished_at(0, Some(cut_off), at);
    }
    // One call still in flight (so the deadline check applies at all).
    assert!(matches!(
        limiter.admit_at(Class::Public, 0, None, at),
        Ok(Admit::Now)
    ));
    assert!(
        matches!(
            limiter.admit_at(Class::Public, 0, deadline, at),
            Ok(Admit::Now)
        ),
        "calls cut off by their callers are not the fastest a call can be"
    );

    // Answered calls that were all slow (the stall was shorter than the deadline) set the
    // floor above the deadline — but only for as long as it is recent.
    let slow = (0..12)
        .filter(|_| matches!(limiter.admit_at(Class::Public, 0, None, at), Ok(Admit::Now)))
        .count();
    at += Duration::from_millis(1500);
    for _ in 0..slow {
        limiter.finished_at(0, answered(Duration::from_millis(1500)), at);
    }
    assert_eq!(
        limiter
            .admit_at(Class::Public, 0, deadline, at)
            .unwrap_err(),
        Refusal::Deadline
    );
    let later = at + STALE_AFTER + Duration::from_millis(1);
    assert!(
        matches!(
            limiter.admit_at(Class::Public, 0, deadline, later),
            Ok(Admit::Now)
        ),
        "nothing admitted for a window: the old floor no longer counts"
    );
}

#[test]
fn a_smaller_room_while_running_lets_the_oldest_go() {
    let now = Instant::now();
    let limiter = fixed_with_room(1, 4, now);
    assert!(admitted_now(&limiter, Class::Public));
    let mut tickets: Vec<Ticket> = (0..4)
        .map(|_| wait(limiter.admit_at(Class::Public, 0, None, now)))
        .collect();
    limiter.reconfigure(Admission {
        max_queued: 1,
        ..settings(false, 1, 1)
    });
    assert_eq!(limiter.waiting(), 1);
    assert!(pushed_out(&mut tickets[0]) && pushed_out(&mut tickets[2]));
    assert!(!handed(&mut tickets[3]));
    // A higher limit hands the new slots to the calls waiting.
    limiter.reconfigure(Admission {
        max_queued: 1,
        ..settings(false, 1, 2)
    });
    assert!(handed(&mut tickets[3]));
}
