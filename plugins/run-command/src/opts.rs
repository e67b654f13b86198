//! Command-line options the GNU way: clustered short flags (`-rn`), values
//! attached or separate (`-A3`, `-A 3`), long options with `=` or a separate
//! value and unique prefixes (`--inc` for `--include`), `-NUM`, `--` to end
//! options, and options after operands unless the command says otherwise.

/// How a command's options look.
pub struct Spec {
    /// Short options that take no value.
    pub flags: &'static str,
    /// Short options that take a value.
    pub values: &'static str,
    /// Long options: name, whether it takes a value, and the short option it
    /// stands for (or `'\0'` for a long-only option).
    pub long: &'static [(&'static str, bool, char)],
    /// Whether `-NUM` is an option (`head -5`, `grep -3`).
    pub numbers: bool,
    /// Whether options may follow operands (GNU permutation).
    pub permute: bool,
}

/// One parsed option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opt {
    /// A short option (or the long option that stands for it), with its value.
    Short(char, Option<String>),
    /// A long-only option, with its value.
    Long(&'static str, Option<String>),
    /// `-NUM`.
    Num(String),
}

/// Parses `args` by `spec`: the options in order and the operands.
/// The error is the message GNU tools print (without the program name).
pub fn parse(spec: &Spec, args: &[String]) -> Result<(Vec<Opt>, Vec<String>), String> {
    let mut opts = Vec::new();
    let mut operands = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        i += 1;
        if a == "--" {
            operands.extend(args[i..].iter().cloned());
            break;
        }
        if a == "-" || !a.starts_with('-') {
            operands.push(a.clone());
            if !spec.permute {
                operands.extend(args[i..].iter().cloned());
                break;
            }
            continue;
        }
        if let Some(body) = a.strip_prefix("--") {
            let (name, inline) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (body, None),
            };
            let exact = spec.long.iter().find(|(l, _, _)| *l == name);
            let found = match exact {
                Some(f) => f,
                None => {
                    let cands: Vec<_> = spec.long.iter().filter(|(l, _, _)| l.starts_with(name)).collect();
                    match cands.as_slice() {
                        [one] => *one,
                        [] => return Err(format!("unrecognized option '--{name}'")),
                        _ => return Err(format!("option '--{name}' is ambiguous")),
                    }
                }
            };
            let (lname, takes, short) = *found;
            let value = if takes {
                match inline {
                    Some(v) => Some(v),
                    None if i < args.len() => {
                        i += 1;
                        Some(args[i - 1].clone())
                    }
                    None => return Err(format!("option '--{lname}' requires an argument")),
                }
            } else {
                if inline.is_some() {
                    return Err(format!("option '--{lname}' doesn't allow an argument"));
                }
                None
            };
            opts.push(if short == '\0' { Opt::Long(lname, value) } else { Opt::Short(short, value) });
            continue;
        }
        let body = &a[1..];
        if spec.numbers && body.bytes().all(|b| b.is_ascii_digit()) {
            opts.push(Opt::Num(body.to_string()));
            continue;
        }
        let chars: Vec<char> = body.chars().collect();
        let mut j = 0;
        while j < chars.len() {
            let c = chars[j];
            j += 1;
            if spec.values.contains(c) {
                let rest: String = chars[j..].iter().collect();
                let value = if !rest.is_empty() {
                    rest
                } else if i < args.len() {
                    i += 1;
                    args[i - 1].clone()
                } else {
                    return Err(format!("option requires an argument -- '{c}'"));
                };
                opts.push(Opt::Short(c, Some(value)));
                break;
            } else if spec.flags.contains(c) {
                opts.push(Opt::Short(c, None));
            } else if spec.numbers && c.is_ascii_digit() {
                let num: String = chars[j - 1..].iter().take_while(|c| c.is_ascii_digit()).collect();
                j += num.len() - 1;
                opts.push(Opt::Num(num));
            } else {
                return Err(format!("invalid option -- '{c}'"));
            }
        }
    }
    Ok((opts, operands))
}

/// Parses a count like `10`, for `-n`, `-m`, `-A`.
pub fn count(cmd: &str, what: &str, v: &str) -> Result<u64, String> {
    v.trim()
        .parse::<u64>()
        .map_err(|_| format!("{cmd}: invalid {what}: '{v}'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: Spec = Spec {
        flags: "rnil",
        values: "Ae",
        long: &[("include", true, '\0'), ("ignore-case", false, 'i')],
        numbers: true,
        permute: true,
    };

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn clusters_values_and_permutation() {
        let (o, ops) = parse(&SPEC, &s(&["-rn", "pat", ".", "-A3", "--inc=*.py", "-e", "x", "-5", "--ignore"])).unwrap();
        assert_eq!(ops, s(&["pat", "."]));
        assert_eq!(
            o,
            vec![
                Opt::Short('r', None),
                Opt::Short('n', None),
                Opt::Short('A', Some("3".into())),
                Opt::Long("include", Some("*.py".into())),
                Opt::Short('e', Some("x".into())),
                Opt::Num("5".into()),
                Opt::Short('i', None),
            ]
        );
        assert!(parse(&SPEC, &s(&["-z"])).unwrap_err().contains("invalid option -- 'z'"));
        let (_, ops) = parse(&SPEC, &s(&["--", "-r"])).unwrap();
        assert_eq!(ops, s(&["-r"]));
    }
}
