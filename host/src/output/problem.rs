//! Why an output file wrote no Secret: one enum for every problem the output path reports, with
//! its CamelCase code (status `outputs[].reason`, grep-able in Events) and a message that never
//! contains file contents or Secret values. `Display` gives `Code: message`, the text of
//! status `outputs[].error`. Pure.

use std::fmt;

use crate::policy::PolicyError;

/// Why nothing was written for one output file (or one staging Secret).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutputProblem {
    /// The staging Secret could not be read back (no or an invalid manifest).
    InvalidStaging(String),
    /// The container terminated without writing the file.
    FileMissing {
        container: String,
        file: String,
        exit_code: i32,
    },
    /// The file was too large to hand over.
    TooLarge { file: String, size: u64 },
    /// The helper could not read the file (e.g. a directory, a name with `/`).
    Unreadable { reason: String },
    /// The container was still running at the helper's deadline.
    Unfinished {
        container: String,
        file: String,
        deadline_seconds: u64,
    },
    /// The output policy could not be used or failed (`code` is the `PolicyError` code).
    Policy { code: &'static str, message: String },
    /// The output policy asked for no Secret; `reasons` are its reasons, `; `-joined.
    NothingWritten { reasons: String },
    /// The host refused a Secret the policy asked for (all or nothing per file).
    InvalidOutput(String),
    /// A Secret of the file's output exists and is not this QuarksJob's output: nothing is
    /// written for the file.
    SecretNotOwned { secret: String },
    /// More Secrets than one output file (or one run) may write.
    TooManySecrets {
        count: usize,
        limit: usize,
        per: &'static str,
    },
}

impl OutputProblem {
    /// The CamelCase code.
    pub fn code(&self) -> &'static str {
        match self {
            OutputProblem::InvalidStaging(_) => "InvalidStaging",
            OutputProblem::FileMissing { .. } => "FileMissing",
            OutputProblem::TooLarge { .. } => "TooLarge",
            OutputProblem::Unreadable { .. } => "Unreadable",
            OutputProblem::Unfinished { .. } => "Unfinished",
            OutputProblem::Policy { code, .. } => code,
            OutputProblem::NothingWritten { .. } => "NothingWritten",
            OutputProblem::InvalidOutput(_) => "InvalidOutput",
            OutputProblem::SecretNotOwned { .. } => "SecretNotOwned",
            OutputProblem::TooManySecrets { .. } => "TooManySecrets",
        }
    }

    /// The sentence after the code; never contains values.
    pub fn message(&self) -> String {
        match self {
            OutputProblem::InvalidStaging(problem) | OutputProblem::InvalidOutput(problem) => {
                problem.clone()
            }
            OutputProblem::FileMissing {
                container,
                file,
                exit_code,
            } => format!("container {container} exited {exit_code} without writing {file}"),
            OutputProblem::TooLarge { file, size } => {
                format!("{file} has {size} bytes, more than a Secret can hold")
            }
            OutputProblem::Unreadable { reason } => reason.clone(),
            OutputProblem::Unfinished {
                container,
                file,
                deadline_seconds,
            } => format!(
                "container {container} was still running when the output helper's deadline of {deadline_seconds} s passed; nothing written for {file}"
            ),
            OutputProblem::Policy { message, .. } => message.clone(),
            OutputProblem::NothingWritten { reasons } => reasons.clone(),
            OutputProblem::TooManySecrets { count, limit, per } => format!(
                "{count} Secrets, more than the {limit} one {per} may write; nothing written for this file"
            ),
            OutputProblem::SecretNotOwned { secret } => format!(
                "Secret {secret} exists and is not the output of this QuarksJob (quarks-job did \
                 not create it for it): it is left as it is and nothing is written for this \
                 file; name another output Secret, or delete {secret} if it may be replaced"
            ),
        }
    }
}

impl From<&PolicyError> for OutputProblem {
    fn from(error: &PolicyError) -> Self {
        OutputProblem::Policy {
            code: error.code(),
            message: error.to_string(),
        }
    }
}

impl fmt::Display for OutputProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code(), self.message())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_code_then_message() {
        let problem = OutputProblem::FileMissing {
            container: "c".into(),
            file: "output.json".into(),
            exit_code: 0,
        };
        assert_eq!(problem.code(), "FileMissing");
        assert_eq!(
            problem.to_string(),
            "FileMissing: container c exited 0 without writing output.json"
        );
        let policy = OutputProblem::from(&PolicyError::Trap("boom".into()));
        assert_eq!(policy.code(), "PolicyTrap");
        assert_eq!(policy.to_string(), "PolicyTrap: the policy trapped: boom");
    }
}
