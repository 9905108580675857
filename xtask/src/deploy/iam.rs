//! The IAM permissions the tool needs, step by step and command by command: what
//! `deploy/iam-policy.json` must grant a deploy role, and no more.
//!
//! [`step`] matches every plan [`Action`], so a new step does not compile without its
//! permissions; [`command`] gives what a command calls outside a plan. The tests prove the
//! policy file grants exactly their union, and that a scan of the source finds exactly the
//! API calls listed here.

use crate::deploy::plan::Action;
use Kind::{Call, Docker, Implied};

/// How a permission is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// An API operation the tool calls itself, through the SDK or a signed request.
    Call,
    /// An ECR registry operation `docker push` performs with the ECR token.
    Docker,
    /// Checked by AWS inside another call: `iam:PassRole` for the definition's roles,
    /// `ecs:TagResource` for the tags a registration carries.
    Implied,
}

/// One IAM action and how it is used.
pub type Need = (&'static str, Kind);

/// The calls of the roll (`deploy::roll`): UpdateService, then polling the service, its tasks
/// and their definition; StopTask with `--strategy stop-tasks` or a task that must go;
/// CreateService onto the new revision on a first deploy from nothing.
const ROLL: &[Need] = &[
    ("ecs:CreateService", Call),
    ("ecs:UpdateService", Call),
    ("ecs:DescribeServices", Call),
    ("ecs:ListTasks", Call),
    ("ecs:DescribeTasks", Call),
    ("ecs:StopTask", Call),
    ("ecs:DescribeTaskDefinition", Call),
    // ECS checks it when a service is created or updated onto a revision with roles.
    ("iam:PassRole", Implied),
];

/// `docker push` to ECR (the AWS guide's list for a push; BatchGetImage reads a manifest).
const PUSH: &[Need] = &[
    ("ecr:BatchCheckLayerAvailability", Docker),
    ("ecr:InitiateLayerUpload", Docker),
    ("ecr:UploadLayerPart", Docker),
    ("ecr:CompleteLayerUpload", Docker),
    ("ecr:PutImage", Docker),
    ("ecr:BatchGetImage", Docker),
];

/// The service and its revision (`Inspect::running`).
const RUNNING: &[Need] = &[("ecs:DescribeServices", Call), ("ecs:DescribeTaskDefinition", Call)];

/// The service's tasks (`Inspect::tasks`, `logs`).
const TASKS: &[Need] = &[("ecs:ListTasks", Call), ("ecs:DescribeTasks", Call)];

/// The repository's definition rendered for what ECR holds (`Inspect::render`).
const RENDER: &[Need] = &[
    ("sts:GetCallerIdentity", Call),
    ("ecr:DescribeRepositories", Call),
    ("ecr:DescribeImages", Call),
];

/// What a plan step needs.
pub fn step(action: &Action) -> &'static [Need] {
    match action {
        Action::CheckEntrypoint { .. }
        | Action::CheckBuildFiles { .. }
        | Action::CheckDocker { .. }
        | Action::SetEntrypoint { .. }
        | Action::Tests
        | Action::Build { .. }
        | Action::Verify { .. } => &[],
        // Credentials from the environment or a profile resolve without a call.
        Action::CheckCredentials { .. } => &[],
        Action::CheckRepositories { .. } => &[("ecr:DescribeRepositories", Call)],
        Action::CheckCluster { .. } => &[("ecs:DescribeClusters", Call)],
        Action::CheckService { create_missing: false, .. } => RUNNING,
        Action::CheckService { create_missing: true, .. } => &[
            ("ecs:DescribeServices", Call),
            ("ecs:DescribeTaskDefinition", Call),
            ("ec2:DescribeSubnets", Call),
            ("ec2:DescribeSecurityGroups", Call),
        ],
        Action::CreateCluster { .. } => &[("ecs:CreateCluster", Call)],
        Action::CreateLogGroups { .. } => {
            &[("logs:DescribeLogGroups", Call), ("logs:CreateLogGroup", Call)]
        }
        Action::CreateRepositories { .. } => &[("ecr:CreateRepository", Call)],
        Action::Login { .. } => &[("ecr:GetAuthorizationToken", Call)],
        Action::Push { .. } => PUSH,
        Action::CheckLatest { .. } => &[("ecr:DescribeImages", Call)],
        Action::Register { .. } => &[
            ("sts:GetCallerIdentity", Call),
            ("ecs:RegisterTaskDefinition", Call),
            // The revision is registered with its tags: tag-on-create needs TagResource.
            ("ecs:TagResource", Implied),
            ("iam:PassRole", Implied),
        ],
        Action::Roll { .. } => ROLL,
        Action::PublicIp => &[("ec2:DescribeNetworkInterfaces", Call)],
        Action::CheckLogs { .. } => &[("logs:GetLogEvents", Call)],
        Action::MarkVerified => &[("ecs:TagResource", Call)],
        Action::Select { .. } => &[("ecs:DescribeTaskDefinition", Call)],
        // The service's deployments and their revisions' tags (who started them).
        Action::CheckDeployments { .. } => RUNNING,
        // The deployment still there, its revision's digests.
        Action::Attach { .. } => RUNNING,
    }
}

/// The commands that talk to AWS besides the deploys (whose plans say what they call).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Rollback,
    Status,
    Diff,
    Render,
    Logs,
}

impl Command {
    pub fn name(self) -> &'static str {
        match self {
            Command::Rollback => "rollback",
            Command::Status => "status",
            Command::Diff => "diff",
            Command::Render => "render",
            Command::Logs => "logs",
        }
    }

    #[cfg(test)]
    pub const ALL: [Command; 5] =
        [Command::Rollback, Command::Status, Command::Diff, Command::Render, Command::Logs];
}

/// What `command` calls besides the steps of its plan (a rollback's plan is [`step`]'s too).
pub fn command(command: Command) -> Vec<Need> {
    let parts: &[&[Need]] = match command {
        // The service's revision, then the family's revisions to choose the one to go back to.
        Command::Rollback => &[RUNNING, &[("ecs:ListTaskDefinitions", Call)]],
        Command::Status => &[RUNNING, TASKS, &[("ec2:DescribeNetworkInterfaces", Call)], RENDER],
        Command::Diff => &[RUNNING, RENDER],
        Command::Render => &[RENDER],
        // Running and stopped tasks, the chosen task's definition, its streams.
        Command::Logs => {
            &[TASKS, &[("ecs:DescribeTaskDefinition", Call)], &[("logs:GetLogEvents", Call)]]
        }
    };
    parts.iter().flat_map(|p| p.iter().copied()).collect()
}

/// Whether an error reads like AWS (or ECR's registry) refusing a call for its permissions.
pub fn is_access_denied(err: &anyhow::Error) -> bool {
    let text = format!("{err:#}");
    ["AccessDenied", "UnauthorizedOperation", "not authorized to perform"]
        .iter()
        .any(|s| text.contains(s))
}

/// The hint for steps refused for their permissions: the IAM actions they need.
pub fn denied_hint(actions: &[&Action]) -> Option<String> {
    hint(actions.iter().flat_map(|a| step(a).iter().copied()), "this step needs")
}

/// `command`'s error, with the permissions it needs when AWS refused a call (and no step
/// named its own already).
pub fn explain(result: anyhow::Result<()>, command: Command) -> anyhow::Result<()> {
    result.map_err(|err| {
        if !is_access_denied(&err) || format!("{err:#}").contains(POLICY_FILE) {
            return err;
        }
        let needs = format!("`cargo xtask {}` needs", command.name());
        match hint(self::command(command).into_iter(), &needs) {
            Some(hint) => err.context(hint),
            None => err,
        }
    })
}

/// The file that grants a deploy role every permission the tool needs.
pub const POLICY_FILE: &str = "deploy/iam-policy.json";

fn hint(needs: impl Iterator<Item = Need>, who: &str) -> Option<String> {
    let mut needed: Vec<&str> = needs.map(|(name, _)| name).collect();
    needed.sort_unstable();
    needed.dedup();
    (!needed.is_empty()).then(|| {
        format!(
            "AWS denied a call: {who} {} ({POLICY_FILE} grants a deploy role every permission the tool needs)",
            needed.join(", ")
        )
    })
}

#[cfg(test)]
mod tests;
