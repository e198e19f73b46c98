//! The admission state machine behind [`LoadShedLayer`](super::LoadShedLayer): the adaptive
//! limit, the waiting room and the figures refusals carry. No I/O; time is passed in, so the
//! tests drive it with made-up clocks.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::oneshot;

/// How much slower than the no-queue latency a window may be before the limit shrinks.
const TOLERANCE: f64 = 1.5;
/// Where an adaptive limit starts, as a multiple of its floor.
const START_FACTOR: f64 = 16.0;
/// How many calls may wait (by the latency estimate) without the limit shrinking.
pub const QUEUE_ALLOWANCE: f64 = 4.0;
/// Weight of a new estimate in the limit (the rest is the old limit).
const SMOOTHING: f64 = 0.2;
/// How much the no-queue latency estimate may rise per window.
const LONG_DRIFT: f64 = 1.001;
/// A window closes after this many calls (and at least [`MIN_WINDOW`])...
pub(super) const WINDOW_CALLS: u32 = 10;
/// ...but not before this long,
pub(super) const MIN_WINDOW: Duration = Duration::from_millis(20);
/// ...and after this long with at least one call.
const MAX_WINDOW: Duration = Duration::from_secs(1);
/// What the last window measured (its fastest call, its pushback) stops counting this long
/// after it closed: a server that admitted nothing for that long has nothing recent to go by.
pub const STALE_AFTER: Duration = MAX_WINDOW;
/// The pushback before any window closed, and once the last one is stale.
pub(super) const FIRST_PUSHBACK: Duration = Duration::from_millis(10);
/// The pushback's bounds.
const MIN_PUSHBACK: Duration = Duration::from_millis(1);
/// ...
pub const MAX_PUSHBACK: Duration = Duration::from_secs(2);
/// A waiting room that has not been empty for this long is a standing queue (an overload, not a
/// burst): it is then served newest first.
pub const STANDING_QUEUE: Duration = Duration::from_millis(100);
/// A call that could wait less than this is not queued.
const MIN_WAIT: Duration = Duration::from_millis(1);

/// `server.*` settings of admission.
#[derive(Debug, Clone, Copy)]
pub struct Admission {
    /// Whether the limit adapts (else it is `max`).
    pub adaptive: bool,
    /// The limit's floor.
    pub min: u32,
    /// The limit's ceiling (and the fixed limit).
    pub max: u32,
    /// Share of the limit only internal calls may use, in percent.
    pub internal_reserve_percent: u32,
    /// Public calls that may wait for a slot at once (0: refuse at once past the limit).
    pub max_queued: u32,
    /// The longest a public call waits for a slot.
    pub queue_timeout: Duration,
}

/// The priority class of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// Carries a verified service token (a saga step, another service's call).
    Internal,
    /// Anything else.
    Public,
}

impl Class {
    pub(super) fn label(self) -> &'static str {
        match self {
            Class::Internal => "internal",
            Class::Public => "public",
        }
    }
}

/// Why a call was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No room under the limit for its class, and none in the waiting room.
    Limit,
    /// It waited as long as it may (or a call of a busier method took its place in a full
    /// waiting room) without a slot coming free.
    Queue,
    /// Its deadline is shorter than the fastest recent call.
    Deadline,
}

impl Refusal {
    /// The `x-mall-shed` value and the metric label: `limit`, `queue`, `deadline`.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Limit => "limit",
            Refusal::Queue => "queue",
            Refusal::Deadline => "deadline",
        }
    }
}

/// What [`Limiter::admit_at`] decided.
#[derive(Debug)]
pub enum Admit {
    /// A slot is the call's now.
    Now,
    /// The call waits for a slot.
    Wait(Ticket),
}

/// A call in the waiting room: its slot arrives on `rx`, or it gives up after `max_wait`.
#[derive(Debug)]
pub struct Ticket {
    /// The call's method.
    pub method: usize,
    /// Its place in the waiting room.
    pub id: u64,
    /// Fires when a slot is handed to it; closed when it was pushed out.
    pub rx: oneshot::Receiver<()>,
    /// How long it may wait.
    pub max_wait: Duration,
}

/// How an admitted call ended, for the latency estimates.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// From admission to its end.
    pub elapsed: Duration,
    /// It answered (else the caller went away first: the time is only a lower bound, and
    /// does not count as the fastest a call can be).
    pub answered: bool,
}

/// The adaptive limit, the calls in flight and those waiting (see the layer's docs).
#[derive(Debug)]
pub struct Limiter {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    settings: Admission,
    limit: f64,
    in_flight: u32,
    /// The no-queue latency estimate (the fastest window, creeping up), seconds.
    long: Option<f64>,
    /// The fastest answered call of the last closed window (seconds), and when it closed.
    floor: Option<(f64, Instant)>,
    /// What a refused caller is told to wait (see the layer's docs).
    pushback: Duration,
    window: Window,
    /// Per method (the last one stands for every method the server does not know).
    methods: Vec<Method>,
    /// Calls in the waiting room.
    waiting: u32,
    next_id: u64,
    /// When the waiting room last became empty or stopped being empty.
    empty_at: Instant,
}

#[derive(Debug, Default)]
struct Method {
    in_flight: u32,
    /// Oldest first.
    queue: VecDeque<Waiter>,
}

#[derive(Debug)]
struct Waiter {
    id: u64,
    tx: oneshot::Sender<()>,
}

#[derive(Debug)]
struct Window {
    started: Instant,
    calls: u32,
    sum: f64,
    /// Fastest answered call.
    fastest: f64,
    busiest: u32,
    /// Calls refused past the limit or out of the waiting room while it was open.
    refused: u32,
}

impl Window {
    fn new(now: Instant) -> Self {
        Window {
            started: now,
            calls: 0,
            sum: 0.0,
            fastest: f64::INFINITY,
            busiest: 0,
            refused: 0,
        }
    }
}

impl Limiter {
    /// A limiter for `methods` methods (plus one for unknown ones), starting at 16× its floor
    /// (adaptive) or at `max` (fixed).
    pub fn new(settings: Admission, methods: usize) -> Self {
        Self::new_at(settings, methods, Instant::now())
    }

    pub(super) fn new_at(settings: Admission, methods: usize, now: Instant) -> Self {
        let settings = sane(settings);
        let start = start(&settings);
        Limiter {
            state: Mutex::new(State {
                settings,
                limit: start,
                in_flight: 0,
                long: None,
                floor: None,
                pushback: FIRST_PUSHBACK,
                window: Window::new(now),
                methods: (0..=methods).map(|_| Method::default()).collect(),
                waiting: 0,
                next_id: 0,
                empty_at: now,
            }),
        }
    }

    /// New settings while running (the config centre): the limit moves into the new bounds
    /// (fixed: to the new `max`); calls in flight are not touched; waiting calls get the slots
    /// a higher limit frees, or leave a smaller waiting room oldest first.
    pub fn reconfigure(&self, settings: Admission) {
        let settings = sane(settings);
        let now = Instant::now();
        let mut state = self.state.lock();
        state.limit = if settings.adaptive {
            if state.settings.adaptive {
                state.limit
            } else {
                start(&settings)
            }
            .clamp(f64::from(settings.min), f64::from(settings.max))
        } else {
            f64::from(settings.max)
        };
        state.settings = settings;
        while state.waiting > settings.max_queued {
            let Some(busiest) = state.busiest_queue() else {
                break;
            };
            state.push_out(busiest, now);
        }
        state.hand_over(now);
    }

    /// The current limit (whole calls).
    pub fn limit(&self) -> u32 {
        whole(self.state.lock().limit)
    }

    /// Calls in the waiting room.
    pub fn waiting(&self) -> u32 {
        self.state.lock().waiting
    }

    /// Admits a call of `class` to `method` whose caller waits at most `timeout`, puts it in
    /// the waiting room, or says why not.
    pub fn admit_at(
        &self,
        class: Class,
        method: usize,
        timeout: Option<Duration>,
        now: Instant,
    ) -> Result<Admit, Refusal> {
        let mut state = self.state.lock();
        let method = method.min(state.methods.len() - 1);
        let floor = state.fresh_floor(now);
        // An idle server tries any call: it is how a stale estimate is corrected.
        if let (Some(timeout), Some(floor)) = (timeout, floor)
            && state.in_flight > 0
            && timeout.as_secs_f64() < floor
        {
            return Err(Refusal::Deadline);
        }
        let cap = match class {
            Class::Internal => state.settings.max,
            Class::Public => state.public_cap(),
        };
        if state.in_flight < cap {
            state.take_slot(method);
            return Ok(Admit::Now);
        }
        let room = match class {
            Class::Internal => Duration::ZERO,
            Class::Public => state.settings.queue_timeout,
        };
        let max_wait = match timeout {
            // Leave the caller time for the call itself.
            Some(timeout) => room.min(timeout.saturating_sub(secs(floor.unwrap_or(0.0)))),
            None => room,
        };
        if max_wait < MIN_WAIT || state.settings.max_queued == 0 {
            state.count_refusal();
            return Err(Refusal::Limit);
        }
        if state.waiting >= state.settings.max_queued && !state.make_room_for(method, now) {
            state.count_refusal();
            return Err(Refusal::Limit);
        }
        if state.waiting == 0 {
            state.empty_at = now;
        }
        let (tx, rx) = oneshot::channel();
        let id = state.next_id;
        state.next_id += 1;
        state.methods[method].queue.push_back(Waiter { id, tx });
        state.waiting += 1;
        Ok(Admit::Wait(Ticket {
            method,
            id,
            rx,
            max_wait,
        }))
    }

    /// The waiting call `id` gives up (its wait ran out, or its caller went away): true if a
    /// slot had been handed to it meanwhile (it is then the caller's, to use or release).
    pub fn leave(
        &self,
        method: usize,
        id: u64,
        rx: &mut oneshot::Receiver<()>,
        now: Instant,
    ) -> bool {
        let mut state = self.state.lock();
        let queue = &mut state.methods[method].queue;
        if let Some(at) = queue.iter().position(|w| w.id == id) {
            queue.remove(at);
            state.waiting -= 1;
            if state.waiting == 0 {
                state.empty_at = now;
            }
            state.count_refusal();
            return false;
        }
        // Slots are handed over under this lock: what the channel holds now is final.
        rx.try_recv().is_ok()
    }

    /// How long a caller refused should wait before trying this server again.
    pub fn pushback_at(&self, now: Instant) -> Duration {
        let state = self.state.lock();
        if now.saturating_duration_since(state.window.started) > STALE_AFTER {
            FIRST_PUSHBACK
        } else {
            state.pushback
        }
    }

    /// Records the end of an admitted call of `method` (`sample`: none for a slot handed to a
    /// waiter that had already gone) and hands its slot on; the limit after it.
    pub fn finished_at(&self, method: usize, sample: Option<Sample>, now: Instant) -> u32 {
        let mut state = self.state.lock();
        state.in_flight = state.in_flight.saturating_sub(1);
        let m = &mut state.methods[method];
        m.in_flight = m.in_flight.saturating_sub(1);
        if let Some(sample) = sample {
            let rtt = sample.elapsed.as_secs_f64();
            let window = &mut state.window;
            window.calls += 1;
            window.sum += rtt;
            if sample.answered {
                window.fastest = window.fastest.min(rtt);
            }
            let age = now.saturating_duration_since(window.started);
            if (window.calls >= WINDOW_CALLS && age >= MIN_WINDOW) || age >= MAX_WINDOW {
                state.close_window(now);
            }
        }
        state.hand_over(now);
        whole(state.limit)
    }
}

impl State {
    fn public_cap(&self) -> u32 {
        let share = f64::from(100 - self.settings.internal_reserve_percent) / 100.0;
        whole(self.limit * share).max(1)
    }

    fn fresh_floor(&self, now: Instant) -> Option<f64> {
        self.floor
            .filter(|(_, at)| now.saturating_duration_since(*at) <= STALE_AFTER)
            .map(|(floor, _)| floor)
    }

    fn take_slot(&mut self, method: usize) {
        self.in_flight += 1;
        self.methods[method].in_flight += 1;
        let busy = self.in_flight;
        self.window.busiest = self.window.busiest.max(busy);
    }

    fn count_refusal(&mut self) {
        self.window.refused = self.window.refused.saturating_add(1);
    }

    /// The method with waiting calls that holds the most (in flight and waiting).
    fn busiest_queue(&self) -> Option<usize> {
        self.methods
            .iter()
            .enumerate()
            .filter(|(_, m)| !m.queue.is_empty())
            .max_by_key(|(_, m)| m.in_flight as usize + m.queue.len())
            .map(|(i, _)| i)
    }

    /// A full waiting room takes a call of `method` if a method holding more than it would
    /// then gives up its oldest waiting call (so a flood of one RPC cannot keep the others
    /// out); false if none does.
    fn make_room_for(&mut self, method: usize, now: Instant) -> bool {
        let Some(busiest) = self.busiest_queue() else {
            return false;
        };
        let holds = |m: &Method| m.in_flight as usize + m.queue.len();
        if busiest == method || holds(&self.methods[method]) + 1 >= holds(&self.methods[busiest]) {
            return false;
        }
        self.push_out(busiest, now);
        true
    }

    /// The oldest waiting call of `method` leaves the room (refused).
    fn push_out(&mut self, method: usize, now: Instant) {
        if self.methods[method].queue.pop_front().is_some() {
            self.waiting -= 1;
            if self.waiting == 0 {
                self.empty_at = now;
            }
            self.count_refusal();
        }
    }

    /// Hands free public slots to waiting calls: the method with the fewest calls in flight
    /// first; within it the oldest call, or the newest once the room has stood full for
    /// [`STANDING_QUEUE`] (under a lasting overload the oldest are the likeliest to have given
    /// up, and serving the newest keeps the latency of what is served low).
    fn hand_over(&mut self, now: Instant) {
        while self.waiting > 0 && self.in_flight < self.public_cap() {
            let next = self
                .methods
                .iter()
                .enumerate()
                .filter(|(_, m)| !m.queue.is_empty())
                .min_by_key(|(_, m)| m.in_flight)
                .map(|(i, _)| i);
            let Some(method) = next else {
                self.waiting = 0;
                break;
            };
            let standing = now.saturating_duration_since(self.empty_at) >= STANDING_QUEUE;
            let queue = &mut self.methods[method].queue;
            let waiter = if standing {
                queue.pop_back()
            } else {
                queue.pop_front()
            };
            let Some(waiter) = waiter else { continue };
            self.waiting -= 1;
            if self.waiting == 0 {
                self.empty_at = now;
            }
            if waiter.tx.send(()).is_ok() {
                self.take_slot(method);
            }
        }
    }

    fn close_window(&mut self, now: Instant) {
        let window = std::mem::replace(&mut self.window, Window::new(now));
        let short = window.sum / f64::from(window.calls.max(1));
        self.floor = window.fastest.is_finite().then_some((window.fastest, now));
        let crowd = 1.0 + f64::from(window.refused) / f64::from(window.calls.max(1));
        self.pushback = Duration::from_secs_f64((short * crowd).min(MAX_PUSHBACK.as_secs_f64()))
            .clamp(MIN_PUSHBACK, MAX_PUSHBACK);
        // The fastest window seen, allowed to creep up (0.1% a window) so a lasting change in
        // the work (a slower disk, bigger carts) becomes the new normal over minutes, while an
        // overload of seconds cannot pass for it.
        let long = match self.long {
            None => short,
            Some(long) => short.min(long * LONG_DRIFT),
        };
        self.long = Some(long);
        if !self.settings.adaptive {
            return;
        }
        // Not using half the limit says nothing about a higher one (but slow calls still say
        // the limit is too high: a limit far above what is in flight must come down too, or
        // it cannot hold back the crowd that arrives next).
        let may_grow = f64::from(window.busiest) >= self.limit / 2.0;
        // The ratio the latency allows, or what leaves QUEUE_ALLOWANCE calls waiting, whichever
        // is more: limit × (no-queue / now) calls are served without waiting.
        let served = long / short.max(f64::EPSILON);
        let gradient = (TOLERANCE * served)
            .max(served + QUEUE_ALLOWANCE / self.limit)
            .clamp(0.5, 1.0);
        let target = self.limit * gradient + self.limit.sqrt();
        let mut limit = self.limit * (1.0 - SMOOTHING) + target * SMOOTHING;
        if !may_grow {
            limit = limit.min(self.limit);
        }
        self.limit = limit.clamp(f64::from(self.settings.min), f64::from(self.settings.max));
    }
}

fn sane(settings: Admission) -> Admission {
    let max = settings.max.max(1);
    Admission {
        max,
        min: settings.min.clamp(1, max),
        internal_reserve_percent: settings.internal_reserve_percent.min(90),
        ..settings
    }
}

fn start(settings: &Admission) -> f64 {
    if settings.adaptive {
        // Room for a burst at start and to find the knee quickly, without admitting a
        // stampede.
        f64::from(settings.max).min(f64::from(settings.min) * START_FACTOR)
    } else {
        f64::from(settings.max)
    }
}

fn whole(limit: f64) -> u32 {
    // The limit is clamped to [1, u32::MAX] by construction.
    limit.floor().clamp(1.0, f64::from(u32::MAX)) as u32
}

fn secs(s: f64) -> Duration {
    Duration::try_from_secs_f64(s).unwrap_or(Duration::MAX)
}

#[cfg(test)]
mod tests;
