//! Progress bars on stderr, one shape for every long command (loading a
//! model, eval, bench, finetune): hidden unless asked for (a terminal).

/// A bar of `len` steps drawn with `template` (indicatif's syntax; the bar
/// itself `=> `), or a hidden one when `show` is false.
pub fn bar(show: bool, len: u64, template: &'static str) -> indicatif::ProgressBar {
    let pb = if show {
        indicatif::ProgressBar::new(len)
    } else {
        indicatif::ProgressBar::hidden()
    };
    pb.set_style(
        indicatif::ProgressStyle::with_template(template)
            .expect("static template")
            .progress_chars("=> "),
    );
    pb
}
