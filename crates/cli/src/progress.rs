//! One progress display for every training loop: an indicatif bar with ETA and a live message on a
//! terminal; without one (CI, a pipe) the bar hides itself and a plain line is logged every 5%.

use indicatif::{ProgressBar, ProgressStyle};
use web_time::Instant;

pub struct Progress {
    bar: ProgressBar,
    total: usize,
    start_position: usize,
    started: Instant,
    log_every: usize,
    unit: &'static str,
}

impl Progress {
    /// A bar over `total` `unit`s (say "steps"), `done` of them already done (a resumed run).
    pub fn new(total: usize, done: usize, unit: &'static str) -> Self {
        let bar = ProgressBar::new(total as u64).with_position(done as u64);
        bar.set_style(
            ProgressStyle::with_template(&format!("{{elapsed_precise}} [{{bar:30}}] {{pos}}/{{len}} {unit} · ETA {{eta}} · {{msg}}"))
                .expect("valid template")
                .progress_chars("=> "),
        );
        let log_every = if bar.is_hidden() { total.div_ceil(20).max(1) } else { usize::MAX };
        Self { bar, total, start_position: done, started: Instant::now(), log_every, unit }
    }

    /// Moves to `position` and shows `message`.
    pub fn update(&self, position: usize, message: &str) {
        self.bar.set_position(position as u64);
        self.bar.set_message(message.to_owned());
        if position.is_multiple_of(self.log_every) || (self.bar.is_hidden() && position == self.total) {
            let elapsed = self.started.elapsed().as_secs_f64();
            let done = position.saturating_sub(self.start_position).max(1) as f64;
            let eta = elapsed / done * self.total.saturating_sub(position) as f64;
            eprintln!("{position}/{} {} · {message} · ETA {eta:.0} s", self.total, self.unit);
        }
    }

    /// A line printed above the bar (or plainly without a terminal).
    pub fn println(&self, line: impl AsRef<str>) {
        if self.bar.is_hidden() {
            eprintln!("{}", line.as_ref());
        } else {
            self.bar.println(line.as_ref());
        }
    }

    pub fn finish(&self) -> f64 {
        self.bar.finish();
        self.started.elapsed().as_secs_f64()
    }
}
