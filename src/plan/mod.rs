//! The plan: the manifest as a DAG of steps (SPEC §2).
//!
//! One `export` node per model; per piece a chain `slice → trace → validate → package`, the
//! slice depending on its model's export and `package` also reading `trace`'s output. Node
//! ids are the user-facing target names: `model:export`, `model/piece:slice`. Selecting
//! targets keeps the named nodes and everything they depend on, nothing else.

mod render;

use std::collections::BTreeSet;
use std::fmt;

use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::{Dfs, Reversed};
use serde::Serialize;

use crate::manifest::Manifest;
use crate::suggestion;

pub use render::PlanFormat;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StepKind {
    Export,
    Slice,
    Trace,
    Validate,
    Package,
}

impl StepKind {
    pub const PIECE_STEPS: [StepKind; 4] = [StepKind::Slice, StepKind::Trace, StepKind::Validate, StepKind::Package];

    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::Export => "export",
            StepKind::Slice => "slice",
            StepKind::Trace => "trace",
            StepKind::Validate => "validate",
            StepKind::Package => "package",
        }
    }

    pub fn parse(s: &str) -> Option<StepKind> {
        [StepKind::Export, StepKind::Slice, StepKind::Trace, StepKind::Validate, StepKind::Package]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// A node of the plan: which step, of which model and piece.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StepId {
    pub model: String,
    /// `None` for a model's `export`.
    pub piece: Option<String>,
    pub kind: StepKind,
}

impl fmt::Display for StepId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.piece {
            Some(piece) => write!(f, "{}/{}:{}", self.model, piece, self.kind.as_str()),
            None => write!(f, "{}:{}", self.model, self.kind.as_str()),
        }
    }
}

impl Serialize for StepId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[derive(Debug, Clone)]
pub struct Plan {
    /// Edges point from a step to the steps that depend on it.
    pub graph: DiGraph<StepId, ()>,
}

/// A TARGET that names nothing in the plan.
#[derive(Debug, Clone, thiserror::Error)]
#[error("unknown target `{target}`")]
pub struct UnknownTarget {
    pub target: String,
    pub help: String,
}

impl Plan {
    pub fn new(manifest: &Manifest) -> Plan {
        Plan::from_names(manifest.models.iter().map(|m| (m.name.as_str(), m.pieces.iter().map(|p| p.name.as_str()))))
    }

    /// The plan of models and their pieces, by name.
    pub fn from_names<'a, P>(models: impl IntoIterator<Item = (&'a str, P)>) -> Plan
    where
        P: IntoIterator<Item = &'a str>,
    {
        let mut graph = DiGraph::new();
        for (model, pieces) in models {
            let export = graph.add_node(StepId { model: model.to_string(), piece: None, kind: StepKind::Export });
            for piece in pieces {
                let mut previous = export;
                let mut trace = None;
                for kind in StepKind::PIECE_STEPS {
                    let node = graph.add_node(StepId { model: model.to_string(), piece: Some(piece.to_string()), kind });
                    graph.add_edge(previous, node, ());
                    if kind == StepKind::Trace {
                        trace = Some(node);
                    }
                    if kind == StepKind::Package {
                        // package reads the SavedModel itself, not only the validation report.
                        graph.add_edge(trace.expect("trace precedes package"), node, ());
                    }
                    previous = node;
                }
            }
        }
        Plan { graph }
    }

    pub fn len(&self) -> usize {
        self.graph.node_count()
    }

    pub fn is_empty(&self) -> bool {
        self.graph.node_count() == 0
    }

    pub fn find(&self, id: &StepId) -> Option<NodeIndex> {
        self.graph.node_indices().find(|&i| &self.graph[i] == id)
    }

    /// Nodes in an order where every step comes after the steps it depends on, in manifest
    /// order. Nodes are added dependencies-first, so index order is such an order (and
    /// `filter_map` keeps it).
    pub fn topological(&self) -> Vec<NodeIndex> {
        debug_assert!(self.graph.edge_indices().all(|e| {
            let (a, b) = self.graph.edge_endpoints(e).expect("edge exists");
            a < b
        }));
        self.graph.node_indices().collect()
    }

    /// The steps a node directly depends on.
    pub fn dependencies(&self, node: NodeIndex) -> impl Iterator<Item = NodeIndex> + '_ {
        self.graph.neighbors_directed(node, petgraph::Direction::Incoming)
    }

    /// The sub-plan of `targets` and everything they depend on. No targets: the whole plan.
    pub fn select(&self, targets: &[String]) -> Result<Plan, UnknownTarget> {
        if targets.is_empty() {
            return Ok(self.clone());
        }
        let mut keep = BTreeSet::new();
        for target in targets {
            let roots = self.resolve_target(target)?;
            let reversed = Reversed(&self.graph);
            for root in roots {
                let mut dfs = Dfs::new(reversed, root);
                while let Some(n) = dfs.next(reversed) {
                    keep.insert(n);
                }
            }
        }
        let graph = self.graph.filter_map(
            |i, id| keep.contains(&i).then(|| id.clone()),
            |_, _| Some(()),
        );
        Ok(Plan { graph })
    }

    /// The nodes a TARGET (`model`, `model/piece`, `model/piece:step`, `model:export`) names.
    fn resolve_target(&self, target: &str) -> Result<Vec<NodeIndex>, UnknownTarget> {
        let (path, kind) = match target.rsplit_once(':') {
            Some((path, step)) => match StepKind::parse(step) {
                Some(kind) => (path, Some(kind)),
                None => {
                    let steps = ["export", "slice", "trace", "validate", "package"];
                    return Err(UnknownTarget {
                        target: target.to_string(),
                        help: suggestion::did_you_mean(step, steps).unwrap_or_else(|| "the steps are export, slice, trace, validate and package".to_string()),
                    });
                }
            },
            None => (target, None),
        };
        let (model, piece) = match path.split_once('/') {
            Some((m, p)) => (m, Some(p)),
            None => (path, None),
        };
        let matches: Vec<NodeIndex> = self
            .graph
            .node_indices()
            .filter(|&i| {
                let id = &self.graph[i];
                id.model == model
                    && piece.is_none_or(|p| id.piece.as_deref() == Some(p))
                    && kind.is_none_or(|k| id.kind == k)
            })
            .collect();
        if !matches.is_empty() {
            return Ok(matches);
        }
        let all: Vec<String> = self.graph.node_weights().flat_map(|id| {
            let mut names = vec![id.model.clone(), id.to_string()];
            if let Some(p) = &id.piece {
                names.push(format!("{}/{}", id.model, p));
            }
            names
        }).collect();
        let help = suggestion::did_you_mean(target, all.iter().map(String::as_str)).unwrap_or_else(|| {
            "a target is `model`, `model/piece` or `model/piece:step`; `exportctl plan` lists them".to_string()
        });
        Err(UnknownTarget { target: target.to_string(), help })
    }
}
