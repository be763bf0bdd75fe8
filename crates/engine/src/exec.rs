//! `docker exec`: more processes in a running container.
//!
//! An exec instance is created (its config kept in memory, as Docker does)
//! and then started: the engine runs `BIN shim exec DIR CONFIG` with its
//! stdout and stderr on pipes, which the API streams to the client, and
//! records the exit code for `GET /exec/ID/json`.

use crate::engine::{random_id, Engine};
use crate::error::{Error, Result};
use crate::fsutil;
use bollard_stubs::models::ExecConfig as ApiExecConfig;
use runtime::protocol::ExecConfig;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, Default)]
pub struct ExecState {
    pub running: bool,
    pub exit_code: Option<i64>,
    pub pid: i32,
}

pub struct ExecInstance {
    pub id: String,
    pub container_id: String,
    pub config: ApiExecConfig,
    pub state: Mutex<ExecState>,
}

impl ExecInstance {
    pub fn state(&self) -> ExecState {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[derive(Default)]
pub struct ExecTable(Mutex<HashMap<String, Arc<ExecInstance>>>);

/// A started exec process: its output pipes and the means to wait for it.
pub struct RunningExec {
    pub child: tokio::process::Child,
    pub instance: Arc<ExecInstance>,
}

impl RunningExec {
    /// Waits for the process and records its exit code.
    pub async fn wait(mut self) -> i64 {
        let pid = self.child.id();
        let waited = self.child.wait().await;
        if let Some(pid) = pid {
            crate::children::disown(pid);
        }
        let code = match waited {
            Ok(status) => {
                use std::os::unix::process::ExitStatusExt;
                status
                    .code()
                    .map(i64::from)
                    .or(status.signal().map(|s| 128 + s as i64))
                    .unwrap_or(255)
            }
            Err(_) => 255,
        };
        let mut st = self
            .instance
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        st.running = false;
        st.exit_code = Some(code);
        code
    }
}

impl Engine {
    /// `POST /containers/ID/exec`.
    pub fn exec_create(&self, container: &str, config: ApiExecConfig) -> Result<String> {
        let c = self.get(container)?;
        let rec = c.snapshot();
        if rec.state.status != crate::record::Status::Running {
            return Err(Error::Conflict(format!(
                "Container {} is not running",
                rec.id
            )));
        }
        if config.tty == Some(true) {
            return Err(Error::NotSupported("a terminal for exec (-t)".into()));
        }
        if config.attach_stdin == Some(true) {
            return Err(Error::NotSupported("stdin for exec (-i)".into()));
        }
        if config.cmd.as_ref().is_none_or(|c| c.is_empty()) {
            return Err(Error::InvalidArgument("No exec command specified".into()));
        }
        let id = random_id();
        let inst = Arc::new(ExecInstance {
            id: id.clone(),
            container_id: rec.id,
            config,
            state: Mutex::new(ExecState::default()),
        });
        self.execs
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.clone(), inst);
        Ok(id)
    }

    pub fn exec_get(&self, id: &str) -> Result<Arc<ExecInstance>> {
        self.execs
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("No such exec instance: {id}")))
    }

    /// Starts an exec instance with piped stdout and stderr.
    pub fn exec_start(&self, id: &str) -> Result<RunningExec> {
        let inst = self.exec_get(id)?;
        {
            let st = inst.state();
            if st.running || st.exit_code.is_some() {
                return Err(Error::Conflict(format!(
                    "exec {id} has already been started"
                )));
            }
        }
        let c = self.get(&inst.container_id)?;
        let rec = c.snapshot();
        if rec.state.status != crate::record::Status::Running {
            return Err(Error::Conflict(format!(
                "Container {} is not running",
                rec.id
            )));
        }
        let cfg = &inst.config;
        // The container's environment, then the exec's own.
        let run: Option<runtime::protocol::RunConfig> =
            std::fs::read(c.dir.join(runtime::protocol::RUN_CONFIG_FILE))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
        let mut env = run.as_ref().map(|r| r.env.clone()).unwrap_or_default();
        for kv in cfg.env.iter().flatten() {
            let key = kv.split('=').next().unwrap_or("");
            env.retain(|e| e.split('=').next() != Some(key));
            env.push(kv.clone());
        }
        let exec = ExecConfig {
            args: cfg.cmd.clone().unwrap_or_default(),
            env,
            cwd: cfg
                .working_dir
                .clone()
                .filter(|w| !w.is_empty())
                .or(run.as_ref().map(|r| r.cwd.clone()))
                .unwrap_or_else(|| "/".into()),
            user: cfg
                .user
                .clone()
                .filter(|u| !u.is_empty())
                .or(run.as_ref().map(|r| r.user.clone()))
                .unwrap_or_default(),
            privileged: cfg.privileged.unwrap_or(false)
                || run.as_ref().is_some_and(|r| r.privileged),
        };
        let path = c.dir.join(format!("exec-{id}.json"));
        let bytes = serde_json::to_vec(&exec)
            .map_err(|e| Error::internal("cannot encode exec config", e))?;
        fsutil::write_replace(&path, &bytes)?;
        let child = crate::children::spawn(
            tokio::process::Command::new(&self.config.shim_exe)
                .arg("shim")
                .arg("exec")
                .arg(&c.dir)
                .arg(&path)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .kill_on_drop(false),
        )
        .map_err(|e| Error::internal("cannot run the exec shim", e))?;
        {
            let mut st = inst.state.lock().unwrap_or_else(|e| e.into_inner());
            st.running = true;
            st.pid = child.id().unwrap_or(0) as i32;
        }
        Ok(RunningExec {
            child,
            instance: inst,
        })
    }
}
