//! Runs one command line natively with the current directory as the only
//! mount: `cargo run -p run-command --example sh -- 'grep -rn x .'`.
fn main() {
    let cmd = std::env::args().nth(1).expect("usage: sh 'COMMAND'");
    let cwd = std::env::current_dir().unwrap().to_string_lossy().into_owned();
    let t = std::time::Instant::now();
    let out = run_command::run(&cmd, &cwd, vec![cwd.clone()], Default::default());
    let took = t.elapsed();
    print!("{}", run_command::render(&out));
    eprintln!("[{:.1} ms]", took.as_secs_f64() * 1e3);
}
