use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::*;
use crate::deploy::plan::{Plan, PlanOptions};
use crate::deploy::target::{DeployFile, DeployFlags, Target, TargetFlags};
use crate::entrypoint::Mode;

const POLICY: &str = POLICY_FILE;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

fn target() -> Target {
    let file = DeployFile::load(root()).unwrap();
    file.resolve(&TargetFlags::default(), &DeployFlags::default(), &|_| None, None).unwrap()
}

fn definition(target: &Target) -> Value {
    let text = std::fs::read_to_string(root().join(&target.task_definition)).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// A statement of the policy file, its `Action` and `Resource` as lists.
struct Statement {
    sid: String,
    actions: Vec<String>,
    resources: Vec<String>,
    condition: Value,
}

fn strings(value: &Value) -> Vec<String> {
    match value {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items.iter().filter_map(Value::as_str).map(String::from).collect(),
        _ => Vec::new(),
    }
}

fn policy() -> Vec<Statement> {
    let text = std::fs::read_to_string(root().join(POLICY)).unwrap();
    let policy: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(policy["Version"], "2012-10-17", "{POLICY}: Version");
    let statements = policy["Statement"].as_array().expect("Statement is a list").clone();
    statements
        .into_iter()
        .map(|s| {
            assert_eq!(s["Effect"], "Allow", "{POLICY}: {s}");
            assert!(s.get("NotAction").is_none() && s.get("NotResource").is_none(), "{s}");
            Statement {
                sid: s["Sid"].as_str().unwrap_or("(no Sid)").to_string(),
                actions: strings(&s["Action"]),
                resources: strings(&s["Resource"]),
                condition: s.get("Condition").cloned().unwrap_or(Value::Null),
            }
        })
        .collect()
}

/// Every IAM action the tool needs, with where (the first few users, for the messages).
fn needed() -> BTreeMap<&'static str, (BTreeSet<Kind>, Vec<String>)> {
    let target = target();
    let opts = PlanOptions::new(PathBuf::from("target/xtask"));
    let mut plans = vec![
        ("first-deploy", Plan::new(&target, Mode::First, &opts)),
        ("deploy", Plan::new(&target, Mode::Later, &opts)),
        (
            "rollback",
            Plan::rollback(&target, "family:1", BTreeMap::new(), Some(Mode::Later), false),
        ),
    ];
    let skip = PlanOptions { skip_tests: true, cache: true, ..opts.clone() };
    plans.push(("deploy --skip-tests", Plan::new(&target, Mode::Later, &skip)));
    let mut needed: BTreeMap<&'static str, (BTreeSet<Kind>, Vec<String>)> = BTreeMap::new();
    let mut add = |(action, kind): Need, user: String| {
        let entry = needed.entry(action).or_default();
        entry.0.insert(kind);
        if !entry.1.contains(&user) {
            entry.1.push(user);
        }
    };
    for (name, plan) in &plans {
        for (view, s) in plan.views().iter().zip(&plan.steps) {
            let what = view.text.split(':').next().unwrap_or_default();
            for need in step(&s.action) {
                add(*need, format!("{name} step {} ({what})", view.index + 1));
            }
        }
    }
    for c in Command::ALL {
        for need in command(c) {
            add(need, format!("{c:?}").to_lowercase());
        }
    }
    needed
}

fn granted(statements: &[Statement]) -> BTreeMap<String, Vec<String>> {
    let mut granted: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for s in statements {
        for action in &s.actions {
            granted.entry(action.clone()).or_default().push(s.sid.clone());
        }
    }
    granted
}

#[test]
fn the_policy_grants_what_the_tool_calls_and_nothing_else() {
    let needed = needed();
    let statements = policy();
    let granted = granted(&statements);
    let mut problems = Vec::new();
    for (action, (kinds, users)) in &needed {
        if !granted.contains_key(*action) {
            problems.push(format!(
                "{POLICY} lacks {action} ({kinds:?}), which {} needs",
                users.iter().take(3).cloned().collect::<Vec<_>>().join(", ")
            ));
        }
    }
    for (action, sids) in &granted {
        if sids.len() > 1 {
            problems.push(format!("{POLICY} grants {action} twice ({})", sids.join(", ")));
        }
        if !needed.contains_key(action.as_str()) {
            problems.push(format!(
                "{POLICY} grants {action} (statement {}), which no step or command needs: remove it, or map the call that needs it in deploy/iam.rs",
                sids.join(", ")
            ));
        }
    }
    assert!(problems.is_empty(), "\n{}\n", problems.join("\n"));
    println!("{POLICY} grants exactly the {} actions the tool needs:", needed.len());
    for (action, (kinds, users)) in &needed {
        let more =
            if users.len() > 3 { format!(" and {} more", users.len() - 3) } else { String::new() };
        println!("  {action:<34} {kinds:?} {}{more}", users[..users.len().min(3)].join(", "));
    }
}

/// What each action may be granted on: the names come from deploy.toml and the task
/// definition, region and account are `*`.
#[derive(Debug, PartialEq)]
enum Scope {
    /// AWS has no resource-level permission for it (the Service Authorization Reference).
    Any,
    /// `*`, limited to the cluster by the `ecs:cluster` condition.
    AnyInCluster,
    Repositories,
    Cluster,
    Service,
    TasksOfCluster,
    Family,
    AllLogGroups,
    LogGroups,
    TaskRoles,
}

fn scope(action: &str) -> Option<Scope> {
    Some(match action {
        "ecr:GetAuthorizationToken"
        | "ecs:CreateCluster"
        | "ecs:RegisterTaskDefinition"
        | "ecs:DescribeTaskDefinition"
        | "ecs:ListTaskDefinitions"
        | "ec2:DescribeNetworkInterfaces"
        | "ec2:DescribeSubnets"
        | "ec2:DescribeSecurityGroups"
        | "sts:GetCallerIdentity" => Scope::Any,
        "ecs:ListTasks" => Scope::AnyInCluster,
        a if a.starts_with("ecr:") => Scope::Repositories,
        "ecs:DescribeClusters" => Scope::Cluster,
        "ecs:CreateService" | "ecs:DescribeServices" | "ecs:UpdateService" => Scope::Service,
        "ecs:DescribeTasks" | "ecs:StopTask" => Scope::TasksOfCluster,
        "ecs:TagResource" => Scope::Family,
        "logs:DescribeLogGroups" => Scope::AllLogGroups,
        "logs:CreateLogGroup" | "logs:GetLogEvents" => Scope::LogGroups,
        "iam:PassRole" => Scope::TaskRoles,
        _ => return None,
    })
}

fn resources(scope: &Scope, target: &Target, definition: &Value) -> Vec<String> {
    let cluster = &target.cluster;
    let family = definition["family"].as_str().unwrap();
    match scope {
        Scope::Any | Scope::AnyInCluster => vec!["*".to_string()],
        Scope::Repositories => target
            .images
            .iter()
            .map(|i| format!("arn:aws:ecr:*:*:repository/{}", i.repository))
            .collect(),
        Scope::Cluster => vec![format!("arn:aws:ecs:*:*:cluster/{cluster}")],
        Scope::Service => vec![format!("arn:aws:ecs:*:*:service/{cluster}/{}", target.service)],
        Scope::TasksOfCluster => vec![format!("arn:aws:ecs:*:*:task/{cluster}/*")],
        Scope::Family => vec![format!("arn:aws:ecs:*:*:task-definition/{family}:*")],
        Scope::AllLogGroups => vec!["arn:aws:logs:*:*:log-group:*".to_string()],
        Scope::LogGroups => crate::deploy::render::log_groups(definition)
            .iter()
            .flat_map(|g| {
                [
                    format!("arn:aws:logs:*:*:log-group:{g}"),
                    format!("arn:aws:logs:*:*:log-group:{g}:*"),
                ]
            })
            .collect(),
        Scope::TaskRoles => ["executionRoleArn", "taskRoleArn"]
            .iter()
            .filter_map(|key| definition[key].as_str())
            .map(|arn| arn.replace("{account_id}", "*"))
            .collect(),
    }
}

fn condition(scope: &Scope, target: &Target) -> Value {
    match scope {
        Scope::AnyInCluster => json!({
            "ArnLike": { "ecs:cluster": format!("arn:aws:ecs:*:*:cluster/{}", target.cluster) }
        }),
        Scope::TaskRoles => {
            json!({ "StringEquals": { "iam:PassedToService": "ecs-tasks.amazonaws.com" } })
        }
        _ => Value::Null,
    }
}

#[test]
fn each_action_is_granted_on_the_targets_resources_only() {
    let target = target();
    let definition = definition(&target);
    let mut problems = Vec::new();
    for s in policy() {
        for action in &s.actions {
            let Some(scope) = scope(action) else {
                problems.push(format!(
                    "{action} (statement {}) has no scope known to this test: add one to `scope`",
                    s.sid
                ));
                continue;
            };
            let expected = resources(&scope, &target, &definition);
            let (mut want, mut got) = (expected.clone(), s.resources.clone());
            want.sort();
            got.sort();
            if want != got {
                problems.push(format!(
                    "{action} (statement {}) is granted on {got:?}; its scope ({scope:?}) is {want:?}",
                    s.sid
                ));
            }
            if s.condition != condition(&scope, &target) {
                problems.push(format!(
                    "{action} (statement {}) has the condition {}; its scope ({scope:?}) wants {}",
                    s.sid,
                    s.condition,
                    condition(&scope, &target)
                ));
            }
        }
    }
    assert!(problems.is_empty(), "\n{}\n", problems.join("\n"));
    let roles = resources(&Scope::TaskRoles, &target, &definition);
    assert!(!roles.is_empty(), "the task definition names no role to pass");
}

/// A Rust source with its comments blanked (`text`) and, in `code`, its string and char
/// literals' contents too; both keep every byte offset.
struct Source {
    text: String,
    code: String,
}

fn blank(src: &str) -> Source {
    let bytes = src.as_bytes();
    let (mut text, mut code) = (bytes.to_vec(), bytes.to_vec());
    let space = |v: &mut Vec<u8>, range: std::ops::Range<usize>| {
        for b in &mut v[range] {
            if *b != b'\n' {
                *b = b' ';
            }
        }
    };
    let ident = |i: usize| i > 0 && (bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
    let mut i = 0;
    while i < bytes.len() {
        let rest = &bytes[i..];
        if rest.starts_with(b"//") {
            let end = rest.iter().position(|&b| b == b'\n').map_or(bytes.len(), |p| i + p);
            space(&mut text, i..end);
            space(&mut code, i..end);
            i = end;
        } else if rest.starts_with(b"/*") {
            let (mut depth, mut j) = (0, i);
            while j < bytes.len() {
                if bytes[j..].starts_with(b"/*") {
                    depth += 1;
                    j += 2;
                } else if bytes[j..].starts_with(b"*/") {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    j += 1;
                }
            }
            space(&mut text, i..j);
            space(&mut code, i..j);
            i = j;
        } else if let Some((open, hashes)) = raw_string(bytes, i).filter(|_| !ident(i)) {
            let close: Vec<u8> =
                std::iter::once(b'"').chain(std::iter::repeat_n(b'#', hashes)).collect();
            let end = (open..bytes.len())
                .find(|&j| bytes[j..].starts_with(&close))
                .unwrap_or(bytes.len());
            space(&mut code, open..end);
            i = end + close.len();
        } else if bytes[i] == b'"' {
            let mut j = i + 1;
            while j < bytes.len() && bytes[j] != b'"' {
                j += if bytes[j] == b'\\' { 2 } else { 1 };
            }
            space(&mut code, i + 1..j.min(bytes.len()));
            i = j + 1;
        } else if bytes[i] == b'\'' {
            // A char literal ('x', '\n', '{'), not a lifetime ('a).
            let len = if bytes.get(i + 1) == Some(&b'\\') {
                bytes.get(i + 3..).and_then(|r| r.iter().position(|&b| b == b'\'')).map(|p| p + 2)
            } else {
                let c = src[i + 1..].chars().next().map_or(1, char::len_utf8);
                (bytes.get(i + 1 + c) == Some(&b'\'')).then_some(c)
            };
            match len {
                Some(len) => {
                    space(&mut code, i + 1..i + 1 + len);
                    i += len + 2;
                }
                None => i += 1,
            }
        } else {
            i += 1;
        }
    }
    let utf8 = |v: Vec<u8>| String::from_utf8(v).expect("blanking keeps UTF-8");
    Source { text: utf8(text), code: utf8(code) }
}

/// `r"`, `r#"`, `br"` at `i`: where the literal's contents start, and its `#`s.
fn raw_string(bytes: &[u8], i: usize) -> Option<(usize, usize)> {
    let k = i + match bytes.get(i..i + 2)? {
        [b'b', b'r'] => 2,
        [b'r', _] => 1,
        _ => return None,
    };
    let hashes = bytes.get(k..)?.iter().take_while(|&&b| b == b'#').count();
    (bytes.get(k + hashes) == Some(&b'"')).then_some((k + hashes + 1, hashes))
}

/// The byte ranges of `#[cfg(test)]` items, and the names of `#[cfg(test)] mod name;`.
fn test_items(code: &str) -> (Vec<std::ops::Range<usize>>, Vec<String>) {
    let bytes = code.as_bytes();
    let (mut ranges, mut modules) = (Vec::new(), Vec::new());
    let mut from = 0;
    while let Some(at) = code[from..].find("#[cfg(test)]").map(|p| p + from) {
        let mut j = at + "#[cfg(test)]".len();
        let mut depth = 0i32;
        let end = loop {
            match bytes.get(j) {
                None => break bytes.len(),
                Some(b'(' | b'[') => depth += 1,
                Some(b')' | b']') => depth -= 1,
                Some(b';') if depth == 0 => break j + 1,
                Some(b'{') if depth == 0 => {
                    let mut braces = 0;
                    while j < bytes.len() {
                        match bytes[j] {
                            b'{' => braces += 1,
                            b'}' => {
                                braces -= 1;
                                if braces == 0 {
                                    break;
                                }
                            }
                            _ => {}
                        }
                        j += 1;
                    }
                    break j + 1;
                }
                _ => {}
            }
            j += 1;
        };
        let item = code[at + "#[cfg(test)]".len()..end].trim();
        if let Some(name) = item.strip_prefix("mod ").or_else(|| item.strip_prefix("pub mod ")) {
            if let Some(name) = name.strip_suffix(';') {
                modules.push(name.trim().to_string());
            }
        }
        ranges.push(at..end);
        from = end;
    }
    (ranges, modules)
}

/// Every `.rs` file under `dir`, but the sandbox's (it talks to the stand-ins only).
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            if path.file_name() != Some("sandbox".as_ref()) {
                sources(&path, out);
            }
        } else if path.extension() == Some("rs".as_ref()) {
            out.push(path);
        }
    }
}

/// The directory a module declared in `file` lives in.
fn module_dir(file: &Path) -> PathBuf {
    let dir = file.parent().unwrap().to_path_buf();
    match file.file_stem().and_then(|s| s.to_str()) {
        Some("mod" | "main" | "lib") => dir,
        Some(stem) => dir.join(stem),
        None => dir,
    }
}

/// The source with its test items cut out.
fn without(text: &str, ranges: &[std::ops::Range<usize>]) -> String {
    let mut out = String::new();
    let mut at = 0;
    for r in ranges {
        out.push_str(&text[at..r.start]);
        at = r.end;
    }
    out.push_str(&text[at..]);
    out
}

fn pascal(snake: &str) -> String {
    snake
        .split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next().map_or(String::new(), |f| f.to_ascii_uppercase().to_string() + c.as_str())
        })
        .collect()
}

/// `ident(` at `at` (just after a `.`): the identifier, when it is called with no argument.
fn no_arg_method(code: &str, at: usize) -> Option<&str> {
    let rest = &code[at..];
    let len = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))?;
    (len > 0 && rest[len..].starts_with("()")).then(|| &rest[..len])
}

/// Whether the builder started at `at` is sent: its chain reaches `.send()`, or the `let`
/// it is bound to is sent later.
fn is_sent(code: &str, statement_start: usize, at: usize) -> bool {
    let end = code[at..].find(';').map_or(code.len(), |p| at + p);
    let squeeze = |s: &str| s.split_whitespace().collect::<String>();
    if squeeze(&code[at..end]).contains(".send()") {
        return true;
    }
    let statement = code[statement_start..at].trim_start();
    let Some(name) = statement
        .strip_prefix("let ")
        .and_then(|s| s.split('=').next())
        .map(|s| s.trim().trim_start_matches("mut ").trim())
    else {
        return false;
    };
    squeeze(&code[end..]).contains(&format!("{name}.send()"))
}

/// The IAM prefix of the one SDK crate a file names.
fn sdk_of(code: &str) -> Option<&'static str> {
    let found: Vec<&str> =
        [("aws_sdk_ecr", "ecr"), ("aws_sdk_ecs", "ecs"), ("aws_sdk_cloudwatchlogs", "logs")]
            .iter()
            .filter(|(krate, _)| code.contains(krate))
            .map(|(_, prefix)| *prefix)
            .collect();
    (found.len() == 1).then(|| found[0])
}

/// Every AWS operation the source calls, as an IAM action, with the files that call it.
fn scanned() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut blanked: Vec<(PathBuf, Source)> = Vec::new();
    let mut test_dirs: Vec<PathBuf> = Vec::new();
    for file in &files {
        let source = blank(&std::fs::read_to_string(file).unwrap());
        let (ranges, modules) = test_items(&source.code);
        for m in modules {
            test_dirs.push(module_dir(file).join(&m));
            test_dirs.push(module_dir(file).join(format!("{m}.rs")));
        }
        let source =
            Source { text: without(&source.text, &ranges), code: without(&source.code, &ranges) };
        blanked.push((file.clone(), source));
    }
    let mut calls: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (file, Source { text, code }) in &blanked {
        if test_dirs.iter().any(|d| file.starts_with(d)) {
            continue;
        }
        let name = file.strip_prefix(root()).unwrap().display().to_string();
        let mut add = |action: String| {
            calls.entry(action).or_default().insert(name.clone());
        };
        // SDK calls: `<client>.operation()` whose builder is sent.
        let mut statement_start = 0;
        for (at, c) in code.char_indices() {
            if matches!(c, ';' | '{' | '}') {
                statement_start = at + 1;
            }
            if c != '.' {
                continue;
            }
            let Some(method) = no_arg_method(code, at + 1) else { continue };
            let before = code[..at].trim_end();
            let receiver_start = before
                .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .map_or(0, |p| p + 1);
            let service = match &before[receiver_start..] {
                "ecr" => "ecr",
                "ecs" => "ecs",
                "logs" => "logs",
                "client" => sdk_of(code)
                    .unwrap_or_else(|| panic!("{name}: `client.{method}()` of which SDK?")),
                _ => continue,
            };
            if is_sent(code, statement_start, at + 1) {
                add(format!("{service}:{}", pascal(method)));
            }
        }
        // Signed calls: ECS's JSON protocol (`call(aws, "Operation", ..)`), the Query
        // protocol's `("Action", "Operation")` (EC2) and `Action=Operation&` (the file's
        // `service: "sts"`).
        let literal = |from: usize| -> Option<String> {
            let rest = text[from..].trim_start();
            let rest = rest.strip_prefix('"')?;
            Some(rest[..rest.find('"')?].to_string())
        };
        let operation = |from: usize| {
            literal(from).filter(|op| {
                op.starts_with(|c: char| c.is_ascii_uppercase())
                    && op.chars().all(|c| c.is_ascii_alphanumeric())
            })
        };
        let json_call = if name.ends_with("ecs_json.rs") { "call(" } else { "ecs_json::call(" };
        for (at, _) in text.match_indices(json_call) {
            let after = at + json_call.len();
            let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
            if at > 0 && ident(text.as_bytes()[at - 1]) {
                continue;
            }
            let Some(comma) = text[after..].find(',') else { continue };
            if let Some(op) = operation(after + comma + 1) {
                add(format!("ecs:{op}"));
            }
        }
        for (at, _) in text.match_indices("(\"Action\",") {
            if let Some(op) = operation(at + "(\"Action\",".len()) {
                add(format!("ec2:{op}"));
            }
        }
        for (at, _) in text.match_indices("Action=") {
            let op: String = text[at + "Action=".len()..]
                .chars()
                .take_while(char::is_ascii_alphanumeric)
                .collect();
            let service = text
                .find("service: \"")
                .and_then(|p| literal(p + "service:".len()))
                .unwrap_or_else(|| panic!("{name}: `Action={op}` signed for which service?"));
            add(format!("{service}:{op}"));
        }
    }
    calls
}

#[test]
fn the_source_calls_exactly_the_operations_mapped_here() {
    let scanned = scanned();
    let mapped: BTreeMap<&str, Vec<String>> = needed()
        .into_iter()
        .filter(|(_, (kinds, _))| kinds.contains(&Kind::Call))
        .map(|(action, (_, users))| (action, users))
        .collect();
    let mut problems = Vec::new();
    for (action, files) in &scanned {
        if !mapped.contains_key(action.as_str()) {
            let files: Vec<&str> = files.iter().map(String::as_str).collect();
            problems.push(format!(
                "{} calls {action}, which deploy/iam.rs maps to no step or command (and {POLICY} may not grant)",
                files.join(", ")
            ));
        }
    }
    for (action, users) in &mapped {
        if !scanned.contains_key(*action) {
            problems.push(format!(
                "deploy/iam.rs says {} calls {action}, but no source outside the tests and the sandbox does",
                users.join(", ")
            ));
        }
    }
    assert!(problems.is_empty(), "\n{}\n", problems.join("\n"));
    for (action, files) in &scanned {
        let files: Vec<&str> = files.iter().map(String::as_str).collect();
        println!("{action:<34} {}", files.join(", "));
    }
}

#[test]
fn the_scan_sees_through_comments_strings_and_test_modules() {
    let src = r##"
// client.describe_ghosts() in a comment
fn f(ecr: &Client) { let x = '{'; ecr.describe_images().send(); }
const S: &str = "}{ ecr.put_image().send()";
const R: &str = r#"a "quoted" }"#;
#[cfg(test)]
mod tests {
    fn g() { ecr.put_image().send(); }
}
#[cfg(test)]
mod live;
fn h<'a>(ecr: &'a Client) { ecr.describe_repositories().send(); }
"##;
    let source = blank(src);
    assert_eq!(source.code.len(), src.len());
    assert!(!source.text.contains("describe_ghosts"));
    assert!(source.text.contains("put_image().send()\""), "strings stay in `text`");
    let (ranges, modules) = test_items(&source.code);
    assert_eq!(modules, ["live"]);
    let code = without(&source.code, &ranges);
    assert!(code.contains("ecr.describe_images()") && code.contains("ecr.describe_repositories()"));
    assert!(!code.contains("put_image"), "{code}");
    assert_eq!(pascal("get_authorization_token"), "GetAuthorizationToken");
}

#[test]
fn a_denied_step_names_the_permissions_it_needs() {
    let denied = anyhow::anyhow!("AccessDeniedException: User: arn:aws:sts::1:assumed-role/deploy/ci is not authorized to perform: ecs:RegisterTaskDefinition")
        .context("ECS RegisterTaskDefinition failed");
    assert!(is_access_denied(&denied));
    assert!(!is_access_denied(&anyhow::anyhow!("ClientException: Too many revisions")));
    let register =
        Action::Register { file: PathBuf::from("rails/task-definition.json"), mode: Mode::Later };
    let hint = denied_hint(&[&register]).unwrap();
    assert!(
        hint.contains(
            "ecs:RegisterTaskDefinition, ecs:TagResource, iam:PassRole, sts:GetCallerIdentity"
        ),
        "{hint}"
    );
    assert_eq!(denied_hint(&[&Action::Tests]), None);
}
