//! The entrypoint's deploy modes as a pure edit of its text.
//!
//! `first` mode makes the first-deploy-only steps (`db:create`, `db:seed`) active; `later`
//! mode comments each of them out the chapter's way: `# ` after the indentation of the
//! command line and of the `echo` line right above it that announces it. Nothing else in
//! the text changes: other lines, line endings and the final newline stay byte for byte.
//!
//! A line is a step's command only when it is one plain command (`[VAR=value ...]
//! [bundle exec] rails|rake|bin/rails|bin/rake <step> [VAR=value|--flag|redirection ...]`),
//! active or behind a `#`. An active line that mentions a step in any other way (chained,
//! continued, substituted) is refused; a comment that mentions a step in any other way is
//! prose and is never uncommented.

use std::fmt;

use serde::Serialize;
use similar::TextDiff;

/// Which deploy the entrypoint is set up for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The first-deploy-only steps run.
    First,
    /// The first-deploy-only steps are commented out.
    Later,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::First => "first",
            Mode::Later => "later",
        })
    }
}

/// Why the text cannot be edited safely; `line` is 1-based.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for Refusal {}

/// Where one configured step is and which mode it is in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StepStatus {
    pub step: String,
    /// Active command lines mean `first`, commented ones `later`.
    pub mode: Mode,
    /// The step's command lines (1-based).
    pub lines: Vec<usize>,
    /// The `echo` lines announcing it (1-based).
    pub echo_lines: Vec<usize>,
    /// Echo lines whose state differs from the command's (active above a commented step).
    pub echo_out_of_step: Vec<usize>,
}

/// The mode of every configured step, in the configuration's order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Status {
    pub steps: Vec<StepStatus>,
}

impl Status {
    /// The file's mode, or `None` when it is mixed.
    pub fn mode(&self) -> Option<Mode> {
        let first = self.steps.first()?.mode;
        let uniform = self.steps.iter().all(|s| s.mode == first && s.echo_out_of_step.is_empty());
        uniform.then_some(first)
    }

    /// What stands between the file and `mode`, one phrase per line; empty when it is in it.
    pub fn differences(&self, mode: Mode) -> Vec<String> {
        let mut out = Vec::new();
        for s in &self.steps {
            let state = |m: Mode| if m == Mode::First { "active" } else { "commented out" };
            if s.mode != mode {
                for line in &s.lines {
                    out.push(format!("`{}` is {} on line {line}", s.step, state(s.mode)));
                }
                // Its out-of-step echo lines are already in `mode`.
                continue;
            }
            for line in &s.echo_out_of_step {
                out.push(format!(
                    "the echo line of `{}` on line {line} is {}",
                    s.step,
                    state(opposite(s.mode))
                ));
            }
        }
        out
    }

    /// Human text: the overall mode, then one line per step.
    pub fn describe(&self, label: &str) -> String {
        let overall = self.mode().map_or("mixed".to_string(), |m| format!("{m} mode"));
        let mut out = format!("{label}: {overall}\n");
        let width = self.steps.iter().map(|s| s.step.len()).max().unwrap_or(0);
        for s in &self.steps {
            let state = match s.mode {
                Mode::First => "first (runs)",
                Mode::Later => "later (commented out)",
            };
            let lines = s.lines.iter().map(usize::to_string).collect::<Vec<_>>().join(", ");
            let plural = if s.lines.len() > 1 { "lines" } else { "line" };
            out.push_str(&format!("  {:<width$}  {state:<21}  {plural} {lines}", s.step));
            if !s.echo_lines.is_empty() {
                let echoes =
                    s.echo_lines.iter().map(usize::to_string).collect::<Vec<_>>().join(", ");
                let plural = if s.echo_lines.len() > 1 { "lines" } else { "line" };
                out.push_str(&format!(", echo {plural} {echoes}"));
            }
            for line in &s.echo_out_of_step {
                let state = if s.mode == Mode::First { "commented out" } else { "still active" };
                out.push_str(&format!(" (echo line {line} {state})"));
            }
            out.push('\n');
        }
        out
    }
}

fn opposite(mode: Mode) -> Mode {
    match mode {
        Mode::First => Mode::Later,
        Mode::Later => Mode::First,
    }
}

/// The mode of each configured step.
pub fn status(text: &str, steps: &[String]) -> Result<Status, Refusal> {
    let lines = split_lines(text);
    let found = analyze(&lines, steps)?;
    let steps = found
        .into_iter()
        .map(|f| {
            let mode =
                if is_commented(lines[f.commands[0]].content) { Mode::Later } else { Mode::First };
            let echo_out_of_step = f
                .echoes
                .iter()
                .filter(|&&i| is_commented(lines[i].content) != (mode == Mode::Later))
                .map(|i| i + 1)
                .collect();
            StepStatus {
                step: f.step,
                mode,
                lines: f.commands.iter().map(|i| i + 1).collect(),
                echo_lines: f.echoes.iter().map(|i| i + 1).collect(),
                echo_out_of_step,
            }
        })
        .collect();
    Ok(Status { steps })
}

/// The text in `mode`. Only the lines of the configured steps (commands and their echo
/// lines) change; `later` also respells a hand-made comment (`#bundle ...`) the chapter's way.
pub fn apply(text: &str, mode: Mode, steps: &[String]) -> Result<String, Refusal> {
    let lines = split_lines(text);
    let found = analyze(&lines, steps)?;
    let mut edited: Vec<Option<String>> = vec![None; lines.len()];
    for f in &found {
        for &i in f.commands.iter().chain(&f.echoes) {
            let active = uncomment(lines[i].content);
            edited[i] = Some(match mode {
                Mode::First => active,
                Mode::Later => comment(&active),
            });
        }
    }
    if mode == Mode::Later {
        check_blocks(&lines, &edited)?;
    }
    let mut out = String::with_capacity(text.len() + 16);
    for (line, new) in lines.iter().zip(edited) {
        out.push_str(new.as_deref().unwrap_or(line.content));
        out.push_str(line.ending);
    }
    Ok(out)
}

/// Refuses a `later` edit that would leave a block (`then ... fi`, `do ... done`, `{ ... }`)
/// with no command, which bash rejects as a syntax error: the container would not start.
fn check_blocks(lines: &[Line<'_>], edited: &[Option<String>]) -> Result<(), Refusal> {
    let mut opener: Option<usize> = None;
    let mut silenced: Option<usize> = None;
    for (i, line) in lines.iter().enumerate() {
        let content = edited[i].as_deref().unwrap_or(line.content);
        let body = content.trim_start_matches([' ', '\t']);
        if body.is_empty() || body.starts_with('#') {
            let newly = edited[i].is_some() && !is_commented(line.content);
            if newly && opener.is_some() && silenced.is_none() {
                silenced = Some(i);
            }
            continue;
        }
        let words = lex(body).words;
        let first = words.first().map(String::as_str);
        if let (Some(open), Some(step_line)) = (opener, silenced) {
            if first.is_some_and(|w| ["fi", "done", "else", "elif", "}"].contains(&w)) {
                return Err(Refusal {
                    line: Some(step_line + 1),
                    message: format!(
                        "commenting out this line would leave the block opened on line {} \
                         (`{}`) without a command, which bash rejects: add a command such as \
                         `true` on a line of its own inside that block, then run this again",
                        open + 1,
                        lines[open].content.trim()
                    ),
                });
            }
        }
        let last = words.last().map(String::as_str);
        opener = last.is_some_and(|w| ["then", "do", "else", "{"].contains(&w)).then_some(i);
        silenced = None;
    }
    Ok(())
}

/// A unified diff of two texts, three lines of context; empty when they are equal.
pub fn unified_diff(label: &str, before: &str, after: &str) -> String {
    // Compared and shown without `\r` or a missing final newline, as a terminal shows them.
    let plain = |text: &str| -> String {
        split_lines(text).iter().map(|l| format!("{}\n", l.content)).collect()
    };
    let (before, after) = (plain(before), plain(after));
    TextDiff::from_lines(&before, &after)
        .unified_diff()
        .header(&format!("a/{label}"), &format!("b/{label}"))
        .to_string()
}

/// One line: its text and its terminator (`\n`, `\r\n`, or empty on a last line without one).
struct Line<'a> {
    content: &'a str,
    ending: &'a str,
}

fn split_lines(text: &str) -> Vec<Line<'_>> {
    text.split_inclusive('\n')
        .map(|raw| {
            let cut = if raw.ends_with("\r\n") {
                raw.len() - 2
            } else if raw.ends_with('\n') {
                raw.len() - 1
            } else {
                raw.len()
            };
            Line { content: &raw[..cut], ending: &raw[cut..] }
        })
        .collect()
}

fn indent_len(content: &str) -> usize {
    content.len() - content.trim_start_matches([' ', '\t']).len()
}

fn is_commented(content: &str) -> bool {
    content[indent_len(content)..].starts_with('#')
}

/// The line without its comment marker: `#` and one space after it go.
fn uncomment(content: &str) -> String {
    let (indent, rest) = content.split_at(indent_len(content));
    match rest.strip_prefix('#') {
        Some(after) => format!("{indent}{}", after.strip_prefix(' ').unwrap_or(after)),
        None => content.to_string(),
    }
}

/// The chapter's way: `# ` after the indentation.
fn comment(content: &str) -> String {
    let (indent, rest) = content.split_at(indent_len(content));
    format!("{indent}# {rest}")
}

/// The lines of one configured step (0-based indices).
struct Found {
    step: String,
    commands: Vec<usize>,
    echoes: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Other,
    /// A plain command running configured step `step` (an index into the steps).
    Command {
        step: usize,
    },
    /// A plain `echo` mentioning these steps.
    Echo {
        steps: Vec<usize>,
    },
    /// A comment that mentions these steps but is no plain command: never uncommented.
    Prose {
        steps: Vec<usize>,
    },
    /// An active command that runs a step among other things: cannot be commented out alone.
    Tangled {
        step: usize,
        how: &'static str,
    },
}

fn analyze(lines: &[Line<'_>], steps: &[String]) -> Result<Vec<Found>, Refusal> {
    let steps = validate_steps(steps)?;
    let mut kinds = Vec::with_capacity(lines.len());
    let mut continues = false;
    for line in lines {
        let (kind, continued) = classify(line.content, &steps, continues);
        kinds.push(kind);
        continues = continued;
    }
    for (i, kind) in kinds.iter().enumerate() {
        if let Kind::Tangled { step, how } = kind {
            return Err(Refusal {
                line: Some(i + 1),
                message: format!(
                    "`{step}` {how} (`{text}`), so it cannot be commented out alone: put it on \
                     a line of its own, such as `{example}`, then run this again",
                    step = steps[*step],
                    text = lines[i].content.trim(),
                    example = example(&steps[*step]),
                ),
            });
        }
    }
    let mut found = Vec::with_capacity(steps.len());
    for (s, step) in steps.iter().enumerate() {
        let commands: Vec<usize> =
            (0..lines.len()).filter(|&i| kinds[i] == Kind::Command { step: s }).collect();
        let Some(&first) = commands.first() else {
            let prose =
                kinds.iter().position(|k| matches!(k, Kind::Prose { steps } if steps.contains(&s)));
            let hint = match prose {
                Some(_) => {
                    " (the comment on this line mentions it, but it is not a commented-out command)"
                }
                None => "",
            };
            return Err(Refusal {
                line: prose.map(|i| i + 1),
                message: format!(
                    "`{step}` is listed in `entrypoint.first_deploy_only` but no line runs it{hint}: \
                     add `{}` on a line of its own, or remove `{step}` from the list in deploy.toml",
                    example(step)
                ),
            });
        };
        let state = is_commented(lines[first].content);
        if let Some(&other) = commands.iter().find(|&&i| is_commented(lines[i].content) != state) {
            let (active, commented) = if state { (other, first) } else { (first, other) };
            return Err(Refusal {
                line: Some(active + 1),
                message: format!(
                    "`{step}` is active here and commented out on line {}: it must be one or \
                     the other, so delete the line you do not want, then run this again",
                    commented + 1
                ),
            });
        }
        let echoes = commands
            .iter()
            .filter(|&&i| {
                i > 0 && matches!(&kinds[i - 1], Kind::Echo { steps } if steps.contains(&s))
            })
            .map(|&i| i - 1)
            .collect();
        found.push(Found { step: step.clone(), commands, echoes });
    }
    Ok(found)
}

fn example(step: &str) -> String {
    format!("bundle exec rails {step} RAILS_ENV=production")
}

/// The configured steps, deduplicated; `db:migrate` must run on every deploy.
fn validate_steps(steps: &[String]) -> Result<Vec<String>, Refusal> {
    let config = |message: String| Refusal { line: None, message };
    if steps.is_empty() {
        return Err(config(
            "`entrypoint.first_deploy_only` is empty: list the steps that run on the first \
             deploy only, such as \"db:create\""
                .to_string(),
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(steps.len());
    for step in steps {
        if step.is_empty() || !step.chars().all(is_task_char) {
            return Err(config(format!(
                "`{step}` in `entrypoint.first_deploy_only` is not a rake task name: list task \
                 names such as \"db:seed\" in deploy.toml"
            )));
        }
        if step == "db:migrate" {
            return Err(config(
                "`db:migrate` is listed in `entrypoint.first_deploy_only`, but it must run on \
                 every deploy: remove it from the list in deploy.toml"
                    .to_string(),
            ));
        }
        if !out.contains(step) {
            out.push(step.clone());
        }
    }
    Ok(out)
}

fn is_task_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | ':' | '-')
}

/// What a line is, and whether the next line continues it (a trailing `\`).
fn classify(content: &str, steps: &[String], continuation: bool) -> (Kind, bool) {
    let indent = indent_len(content);
    let commented = content[indent..].starts_with('#');
    let body = if commented {
        content[indent + 1..].trim_start_matches([' ', '\t'])
    } else {
        &content[indent..]
    };
    let lexed = lex(body);
    let continued = !commented && lexed.continued;
    let simple = lexed.plain && !lexed.continued && !continuation;
    if simple {
        if let Some(step) = step_command(&lexed.words, steps) {
            return (Kind::Command { step }, continued);
        }
    }
    let code = &body[..lexed.code_end];
    let mentioned: Vec<usize> = (0..steps.len()).filter(|&s| mentions(code, &steps[s])).collect();
    let kind = match mentioned.first() {
        None => Kind::Other,
        Some(_) if simple && lexed.words.first().is_some_and(|w| w == "echo") => {
            Kind::Echo { steps: mentioned }
        }
        Some(_) if commented => Kind::Prose { steps: mentioned },
        Some(&step) => {
            let how = if lexed.chained {
                "is chained with other commands on one line"
            } else if lexed.continued || continuation {
                "is part of a command split over several lines"
            } else {
                "is not alone in its command"
            };
            Kind::Tangled { step, how }
        }
    };
    (kind, continued)
}

/// Whether `code` names `step` as a whole task (`db:create` is not in `db:create_all`).
fn mentions(code: &str, step: &str) -> bool {
    code.match_indices(step).any(|(at, _)| {
        let before = code[..at].chars().next_back();
        let after = code[at + step.len()..].chars().next();
        !before.is_some_and(is_task_char) && !after.is_some_and(is_task_char)
    })
}

const RUNNERS: [&str; 6] = ["rails", "rake", "bin/rails", "bin/rake", "./bin/rails", "./bin/rake"];

/// The configured step a plain command runs: `[VAR=value ...] [bundle exec] <runner> <step>`
/// followed only by `VAR=value` arguments, `--flags` and redirections.
fn step_command(words: &[String], steps: &[String]) -> Option<usize> {
    let mut i = words.iter().take_while(|w| is_assignment(w)).count();
    if words.get(i).is_some_and(|w| w == "bundle") && words.get(i + 1).is_some_and(|w| w == "exec")
    {
        i += 2;
    }
    if !RUNNERS.contains(&words.get(i)?.as_str()) {
        return None;
    }
    let task = words.get(i + 1)?;
    let step = steps.iter().position(|s| s == task)?;
    let mut rest = words[i + 2..].iter();
    while let Some(word) = rest.next() {
        if is_assignment(word) || word.starts_with('-') {
            continue;
        }
        match redirection(word) {
            Some(true) => {
                rest.next()?;
            }
            Some(false) => {}
            None => return None,
        }
    }
    Some(step)
}

fn is_assignment(word: &str) -> bool {
    match word.split_once('=') {
        Some((name, _)) => {
            name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        }
        None => false,
    }
}

/// `Some(needs_target)` when `word` is a redirection (`>log`, `2>&1`, `>>`, `&>`).
fn redirection(word: &str) -> Option<bool> {
    let rest = word.trim_start_matches(|c: char| c.is_ascii_digit() || c == '&');
    if !rest.starts_with(['>', '<']) {
        return None;
    }
    let target = rest.trim_start_matches(['>', '<', '&', '|']);
    Some(target.is_empty())
}

/// A command line split into words the way the shell would, as far as it matters here.
#[derive(Debug, Default)]
struct Lexed {
    /// Words with their quotes removed.
    words: Vec<String>,
    /// No operators, substitutions or unterminated quotes.
    plain: bool,
    /// `&&`, `||`, `;`, `|`, `&` or a subshell: more than one command.
    chained: bool,
    /// Ends with a `\`: the next line continues it.
    continued: bool,
    /// Where a trailing `# comment` starts (or the length).
    code_end: usize,
}

fn lex(body: &str) -> Lexed {
    let mut lexed = Lexed { plain: true, code_end: body.len(), ..Lexed::default() };
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = body.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        match c {
            ' ' | '\t' | '\r' => end_word(&mut word, &mut in_word, &mut lexed.words),
            '#' if !in_word => {
                lexed.code_end = at;
                break;
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some((_, '\'')) => break,
                        Some((_, ch)) => word.push(ch),
                        None => {
                            lexed.plain = false;
                            break;
                        }
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some((_, '"')) => break,
                        Some((_, '\\')) => {
                            if let Some((_, ch)) = chars.next() {
                                word.push(ch);
                            }
                        }
                        Some((_, '`')) => lexed.plain = false,
                        Some((_, '$')) if chars.peek().is_some_and(|&(_, n)| n == '(') => {
                            lexed.plain = false;
                        }
                        Some((_, ch)) => word.push(ch),
                        None => {
                            lexed.plain = false;
                            break;
                        }
                    }
                }
            }
            '\\' => match chars.next() {
                Some((_, ch)) => {
                    in_word = true;
                    word.push(ch);
                }
                None => lexed.continued = true,
            },
            '`' => {
                lexed.plain = false;
                in_word = true;
                word.push(c);
            }
            '$' if chars.peek().is_some_and(|&(_, n)| n == '(') => {
                lexed.plain = false;
                in_word = true;
                word.push(c);
            }
            '&' if (in_word && word.ends_with(['>', '<']))
                || chars.peek().is_some_and(|&(_, n)| n == '>') =>
            {
                in_word = true;
                word.push(c);
            }
            ';' | '&' | '|' | '(' | ')' => {
                if c == '|' && in_word && word.ends_with('>') {
                    word.push(c);
                    continue;
                }
                lexed.plain = false;
                lexed.chained = true;
                end_word(&mut word, &mut in_word, &mut lexed.words);
            }
            _ => {
                in_word = true;
                word.push(c);
            }
        }
    }
    end_word(&mut word, &mut in_word, &mut lexed.words);
    lexed
}

fn end_word(word: &mut String, in_word: &mut bool, words: &mut Vec<String>) {
    if *in_word {
        words.push(std::mem::take(word));
        *in_word = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps() -> Vec<String> {
        vec!["db:create".to_string(), "db:seed".to_string()]
    }

    #[test]
    fn a_step_is_named_only_as_a_whole_task() {
        assert!(mentions("rails db:create RAILS_ENV=production", "db:create"));
        assert!(mentions("echo \"db:create\"", "db:create"));
        assert!(mentions("run db:create.", "db:create"));
        assert!(!mentions("rails db:create_something", "db:create"));
        assert!(!mentions("rails db:create:all", "db:create"));
        assert!(!mentions("rails db:seed-fu", "db:seed"));
        assert!(!mentions("rails mydb:seed", "db:seed"));
    }

    #[test]
    fn the_shell_words_are_found() {
        let lexed = lex("RAILS_ENV='prod uction' bundle exec rails \"db:seed\" 2>&1 # once");
        assert_eq!(
            lexed.words,
            ["RAILS_ENV=prod uction", "bundle", "exec", "rails", "db:seed", "2>&1"]
        );
        assert!(lexed.plain && !lexed.chained && !lexed.continued);
        assert_eq!(
            lexed.code_end,
            "RAILS_ENV='prod uction' bundle exec rails \"db:seed\" 2>&1 ".len()
        );
        for chained in ["a && b", "a; b", "a | b", "a || b", "a & ", "(a)"] {
            let lexed = lex(chained);
            assert!(!lexed.plain && lexed.chained, "{chained}");
        }
        for not_plain in ["echo `x`", "echo $(x)", "echo \"$(x)\"", "echo 'open"] {
            assert!(!lex(not_plain).plain, "{not_plain}");
        }
        assert!(lex("rails db:seed >| log &> all").plain);
        assert!(lex("rails db:seed \\").continued);
        assert!(!lex("rails db:seed \\\\").continued);
    }

    #[test]
    fn commands_are_recognised_in_every_spelling() {
        let words = |s: &str| lex(s).words;
        for (line, step) in [
            ("bundle exec rails db:seed RAILS_ENV=production", Some(1)),
            ("RAILS_ENV=production bundle exec rails db:seed", Some(1)),
            ("bin/rails db:create", Some(0)),
            ("./bin/rake db:create --trace", Some(0)),
            ("bundle exec rake db:seed > log 2>&1", Some(1)),
            ("rails db:seed >", None),
            ("bundle exec rails db:migrate", None),
            ("bundle exec rails db:create db:migrate", None),
            ("bundle exec rails db:seed twice", None),
            ("exec bundle exec rails db:seed", None),
            ("bundle rails db:seed", None),
        ] {
            assert_eq!(step_command(&words(line), &steps()), step, "{line}");
        }
    }

    #[test]
    fn comments_come_off_and_go_on_the_chapters_way() {
        assert_eq!(uncomment("# bundle exec rails db:seed"), "bundle exec rails db:seed");
        assert_eq!(uncomment("#bundle"), "bundle");
        assert_eq!(uncomment("  #  bundle"), "   bundle");
        assert_eq!(uncomment("\t# echo"), "\techo");
        assert_eq!(comment("  bundle"), "  # bundle");
        assert_eq!(comment("echo \"x\""), "# echo \"x\"");
    }

    #[test]
    fn prose_is_never_uncommented() {
        let text = "# db:seed runs once\n# bundle exec rails db:seed twice would raise\n\
                    # bundle exec rails db:seed\nbundle exec rails db:create\n";
        let first = apply(text, Mode::First, &steps()).unwrap();
        assert_eq!(
            first,
            "# db:seed runs once\n# bundle exec rails db:seed twice would raise\n\
             bundle exec rails db:seed\nbundle exec rails db:create\n"
        );
    }

    #[test]
    fn an_echo_pairs_only_with_the_command_right_below_it() {
        let text = "echo \"bundle exec rails db:seed\"\n\nbundle exec rails db:seed\n\
                    echo \"db:create\"\nbundle exec rails db:create\necho \"db:seed done\"\n";
        let status = status(text, &steps()).unwrap();
        assert_eq!(status.steps[0].echo_lines, [4]);
        assert!(status.steps[1].echo_lines.is_empty());
        let later = apply(text, Mode::Later, &steps()).unwrap();
        assert_eq!(
            later,
            "echo \"bundle exec rails db:seed\"\n\n# bundle exec rails db:seed\n\
             # echo \"db:create\"\n# bundle exec rails db:create\necho \"db:seed done\"\n"
        );
    }

    #[test]
    fn diff_hunks_are_split_beyond_the_context() {
        let before: String = (1..=20).map(|n| format!("line {n}\n")).collect();
        let after =
            before.replace("line 2\n", "line two\n").replace("line 19\n", "line nineteen\n");
        assert_eq!(
            unified_diff("f", &before, &after),
            "--- a/f\n+++ b/f\n@@ -1,5 +1,5 @@\n line 1\n-line 2\n+line two\n line 3\n line 4\n \
             line 5\n@@ -16,5 +16,5 @@\n line 16\n line 17\n line 18\n-line 19\n+line nineteen\n \
             line 20\n"
        );
        assert_eq!(unified_diff("f", &before, &before), "");
    }
}
