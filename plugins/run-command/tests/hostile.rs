//! Model output is untrusted: thousands of malformed and odd command lines,
//! built from the pieces a confused model writes, must end with a status and
//! a message, never a panic.

use std::path::Path;

const PIECES: &[&str] = &[
    "grep", "rg", "find", "sed", "awk", "sort", "uniq", "cut", "tr", "head", "tail", "wc", "ls",
    "cat", "xargs", "echo", "printf", "test", "[", "]", "cd", "basename", "dirname", "seq 3",
    "-", "--", "-r", "-n", "-e", "-E", "-k", "-t", "-f", "-c", "-d", "-A", "-C", "-0", "-I", "{}",
    "\\;", "+", "-name", "-exec", "-o", "!", "(", ")", "'", "\"", "\\", "$", "${", "$?", "*", "?",
    "[a-", "[[:", "\\(", "\\{", "{1,", "s/", "s/a/b/g", "/x/p", "1,2p", "$p", "y/a/b/", "|", "||",
    "&&", ";", ">", ">>", "<", "2>&1", "2>", "&>", ".", "..", "/", "/etc", "a.txt", "dir",
    "'{print $1}'", "'{print $(NF-9)}'", "-F,", "%s", "%d", "%-5q", "\\n", "0", "-1", "99999999999999999999",
    "ÿ", "é*", "\t", "#", "=", "X=1", "$(", "$(echo", "`", "`ls`", "$(ls)", "\"$(", ")",
];

#[test]
fn odd_command_lines_never_panic() {
    let dir = std::env::temp_dir().join(format!("rc-hostile-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("dir")).unwrap();
    std::fs::write(dir.join("a.txt"), "alpha beta\ngamma, delta\n\0binary\n").unwrap();
    std::fs::write(dir.join("dir/b.txt"), "x y z\n").unwrap();
    let root = dir.canonicalize().unwrap();
    let root_s = root.to_str().unwrap().to_string();
    let mut seed: u64 = 0x9E3779B97F4A7C15;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..4000 {
        let n = 1 + (next() % 7) as usize;
        let line: Vec<&str> = (0..n).map(|_| PIECES[(next() % PIECES.len() as u64) as usize]).collect();
        let line = line.join(if next() % 3 == 0 { "" } else { " " });
        let out = run_command::run(&line, &root_s, vec![root_s.clone()], Default::default());
        let _ = run_command::render(&out);
    }
    assert!(Path::new(&root).join("a.txt").exists());
    let _ = std::fs::remove_dir_all(&root);
}
