//! The plan: the manifest as a DAG of steps.
//!
//! One `export` node per model; per piece a chain `slice → trace → validate → package`, the
//! slice depending on its model's export and `package` also reading `trace`'s output. A piece
//! whose `formats` has `litert` gets two more steps between trace and package:
//! `convert-litert` (from the traced SavedModel) and `validate-litert` (which also reads the
//! trace's golden files); package then waits for both and ships `model.tflite`. Node ids are
//! the user-facing target names: `model:export`, `model/piece:slice`. Selecting targets keeps
//! the named nodes and everything they depend on, nothing else.

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
#[serde(rename_all = "kebab-case")]
pub enum StepKind {
    Export,
    Slice,
    Trace,
    Validate,
    ConvertLitert,
    ValidateLitert,
    Package,
}

impl StepKind {
    pub const PIECE_STEPS: [StepKind; 4] = [StepKind::Slice, StepKind::Trace, StepKind::Validate, StepKind::Package];

    /// Every kind, in the order a piece's steps run.
    pub const ALL: [StepKind; 7] = [
        StepKind::Export,
        StepKind::Slice,
        StepKind::Trace,
        StepKind::Validate,
        StepKind::ConvertLitert,
        StepKind::ValidateLitert,
        StepKind::Package,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::Export => "export",
            StepKind::Slice => "slice",
            StepKind::Trace => "trace",
            StepKind::Validate => "validate",
            StepKind::ConvertLitert => "convert-litert",
            StepKind::ValidateLitert => "validate-litert",
            StepKind::Package => "package",
        }
    }

    pub fn parse(s: &str) -> Option<StepKind> {
        StepKind::ALL.into_iter().find(|k| k.as_str() == s)
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
#[derive(Debug, Clone, thiserror::Error, miette::Diagnostic)]
#[error("unknown target `{target}`")]
pub struct UnknownTarget {
    pub target: String,
    /// "did you mean …?", or what a target looks like.
    #[help]
    pub help: String,
}

/// `--shard K/N`: the K-th of N shares of a plan's pieces, for N CI jobs building one manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// From 1.
    pub index: usize,
    pub count: usize,
}

impl std::str::FromStr for Shard {
    type Err = String;

    fn from_str(s: &str) -> Result<Shard, String> {
        let parsed = s.split_once('/').and_then(|(k, n)| Some((k.trim().parse::<usize>().ok()?, n.trim().parse::<usize>().ok()?)));
        match parsed {
            Some((index, count)) if index >= 1 && index <= count => Ok(Shard { index, count }),
            Some((index, count)) => Err(format!("shard {index} of {count} does not exist: K goes from 1 to N, e.g. --shard 1/{count}")),
            None => Err(format!("`{s}` is not K/N: write the shard and the number of shards, e.g. --shard 2/3")),
        }
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl Plan {
    pub fn new(manifest: &Manifest) -> Plan {
        Plan::from_pieces(manifest.models.iter().map(|m| (m.name.as_str(), m.pieces.iter().map(|p| (p.name.as_str(), p.litert.is_some())))))
    }

    /// The plan of models and their pieces, by name (SavedModel only).
    pub fn from_names<'a, P>(models: impl IntoIterator<Item = (&'a str, P)>) -> Plan
    where
        P: IntoIterator<Item = &'a str>,
    {
        Plan::from_pieces(models.into_iter().map(|(m, pieces)| (m, pieces.into_iter().map(|p| (p, false)))))
    }

    /// The plan of models and their pieces, by name, each piece with whether it is also
    /// converted to LiteRT.
    pub fn from_pieces<'a, P>(models: impl IntoIterator<Item = (&'a str, P)>) -> Plan
    where
        P: IntoIterator<Item = (&'a str, bool)>,
    {
        let mut graph = DiGraph::new();
        for (model, pieces) in models {
            let export = graph.add_node(StepId { model: model.to_string(), piece: None, kind: StepKind::Export });
            for (piece, litert) in pieces {
                let mut node = |kind| graph.add_node(StepId { model: model.to_string(), piece: Some(piece.to_string()), kind });
                let slice = node(StepKind::Slice);
                let trace = node(StepKind::Trace);
                let validate = node(StepKind::Validate);
                let litert = litert.then(|| (node(StepKind::ConvertLitert), node(StepKind::ValidateLitert)));
                let package = node(StepKind::Package);
                graph.add_edge(export, slice, ());
                graph.add_edge(slice, trace, ());
                graph.add_edge(trace, validate, ());
                graph.add_edge(validate, package, ());
                // package reads the SavedModel itself, not only the validation report.
                graph.add_edge(trace, package, ());
                if let Some((convert, check)) = litert {
                    graph.add_edge(trace, convert, ());
                    graph.add_edge(convert, check, ());
                    // validate-litert runs the trace's golden inputs.
                    graph.add_edge(trace, check, ());
                    graph.add_edge(check, package, ());
                    // package ships convert-litert's model.tflite.
                    graph.add_edge(convert, package, ());
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
        let graph = self.graph.filter_map(|i, id| keep.contains(&i).then(|| id.clone()), |_, _| Some(()));
        Ok(Plan { graph })
    }

    /// The share of the pieces `shard` builds, with all of their steps (and their models'
    /// exports). Pieces are ordered by model and piece name and cut into N contiguous runs
    /// whose sizes differ by one at most: the same share whatever the manifest's order or the
    /// machine, the shares together are the whole plan, and a model's pieces tend to stay
    /// together, so that fewer shards export the same model. A model with no pieces in the
    /// plan counts as one unit.
    pub fn shard(&self, shard: Shard) -> Plan {
        let units: BTreeSet<(&str, Option<&str>)> = self
            .graph
            .node_weights()
            .filter(|id| id.piece.is_some() || !self.graph.node_weights().any(|o| o.model == id.model && o.piece.is_some()))
            .map(|id| (id.model.as_str(), id.piece.as_deref()))
            .collect();
        let units: Vec<(&str, Option<&str>)> = units.into_iter().collect();
        let (start, end) = ((shard.index - 1) * units.len() / shard.count, shard.index * units.len() / shard.count);
        let chosen: BTreeSet<(&str, Option<&str>)> = units[start..end].iter().copied().collect();
        let keep: BTreeSet<NodeIndex> = self
            .graph
            .node_indices()
            .filter(|&i| {
                let id = &self.graph[i];
                let unit = (id.model.as_str(), id.piece.as_deref());
                chosen.contains(&unit)
                    // A model's export goes with any of its pieces.
                    || (id.piece.is_none() && chosen.iter().any(|(m, _)| *m == id.model))
            })
            .collect();
        let graph = self.graph.filter_map(|i, id| keep.contains(&i).then(|| id.clone()), |_, _| Some(()));
        Plan { graph }
    }

    /// The nodes a TARGET (`model`, `model/piece`, `model/piece:step`, `model:export`) names.
    fn resolve_target(&self, target: &str) -> Result<Vec<NodeIndex>, UnknownTarget> {
        let (path, kind) = match target.rsplit_once(':') {
            Some((path, step)) => match StepKind::parse(step) {
                Some(kind) => (path, Some(kind)),
                None => {
                    let steps = StepKind::ALL.map(StepKind::as_str);
                    return Err(UnknownTarget {
                        target: target.to_string(),
                        help: suggestion::did_you_mean(step, steps).unwrap_or_else(|| {
                            "the steps are export, slice, trace, validate, convert-litert, validate-litert and package".to_string()
                        }),
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
                id.model == model && piece.is_none_or(|p| id.piece.as_deref() == Some(p)) && kind.is_none_or(|k| id.kind == k)
            })
            .collect();
        if !matches.is_empty() {
            return Ok(matches);
        }
        let all: Vec<String> = self
            .graph
            .node_weights()
            .flat_map(|id| {
                let mut names = vec![id.model.clone(), id.to_string()];
                if let Some(p) = &id.piece {
                    names.push(format!("{}/{}", id.model, p));
                }
                names
            })
            .collect();
        let help = suggestion::did_you_mean(target, all.iter().map(String::as_str))
            .unwrap_or_else(|| "a target is `model`, `model/piece` or `model/piece:step`; `exportctl plan` lists them".to_string());
        Err(UnknownTarget { target: target.to_string(), help })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> Plan {
        Plan::from_names([("b", vec!["p1", "p2"]), ("a", vec!["x", "y", "z"]), ("c", vec![])])
    }

    fn pieces(plan: &Plan) -> Vec<String> {
        let mut names: BTreeSet<String> = BTreeSet::new();
        for id in plan.graph.node_weights() {
            names.insert(match &id.piece {
                Some(p) => format!("{}/{p}", id.model),
                None if plan.graph.node_weights().any(|o| o.model == id.model && o.piece.is_some()) => continue,
                None => id.model.clone(),
            });
        }
        names.into_iter().collect()
    }

    #[test]
    fn shards_partition_the_pieces_in_balanced_contiguous_runs() {
        let plan = plan();
        let shards: Vec<Vec<String>> = (1..=3).map(|k| pieces(&plan.shard(Shard { index: k, count: 3 }))).collect();
        assert_eq!(shards, vec![vec!["a/x", "a/y"], vec!["a/z", "b/p1"], vec!["b/p2", "c"]]);
        // Every step of the plan is in some shard, and a piece's steps all go with it.
        let mut all: BTreeSet<StepId> = BTreeSet::new();
        for k in 1..=3 {
            let shard = plan.shard(Shard { index: k, count: 3 });
            for id in shard.graph.node_weights() {
                all.insert(id.clone());
            }
            for id in shard.graph.node_weights().filter(|id| id.piece.is_some()) {
                let export = StepId { model: id.model.clone(), piece: None, kind: StepKind::Export };
                assert!(shard.find(&export).is_some(), "{id} without its export");
                assert_eq!(shard.graph.node_weights().filter(|o| o.model == id.model && o.piece == id.piece).count(), 4);
            }
        }
        assert_eq!(all.len(), plan.len());
    }

    #[test]
    fn a_litert_piece_converts_and_validates_between_trace_and_package() {
        let plan = Plan::from_pieces([("m", vec![("float", true), ("server", false)])]);
        assert_eq!(plan.len(), 1 + 6 + 4);
        let id = |piece: &str, kind| StepId { model: "m".into(), piece: Some(piece.into()), kind };
        let deps = |piece: &str, kind| -> BTreeSet<StepKind> {
            plan.dependencies(plan.find(&id(piece, kind)).unwrap()).map(|d| plan.graph[d].kind).collect()
        };
        assert_eq!(deps("float", StepKind::ConvertLitert), BTreeSet::from([StepKind::Trace]));
        assert_eq!(deps("float", StepKind::ValidateLitert), BTreeSet::from([StepKind::Trace, StepKind::ConvertLitert]));
        assert_eq!(
            deps("float", StepKind::Package),
            BTreeSet::from([StepKind::Trace, StepKind::Validate, StepKind::ConvertLitert, StepKind::ValidateLitert])
        );
        assert_eq!(deps("server", StepKind::Package), BTreeSet::from([StepKind::Trace, StepKind::Validate]));
        // Targets name the new steps, and selecting one keeps only what it needs.
        let selected = plan.select(&["m/float:validate-litert".to_string()]).unwrap();
        let kinds: BTreeSet<StepKind> = selected.graph.node_weights().map(|id| id.kind).collect();
        assert_eq!(
            kinds,
            BTreeSet::from([StepKind::Export, StepKind::Slice, StepKind::Trace, StepKind::ConvertLitert, StepKind::ValidateLitert])
        );
        assert!(plan.select(&["m/float:convert-lite".to_string()]).unwrap_err().help.contains("convert-litert"));
        let _ = plan.topological();
    }

    #[test]
    fn more_shards_than_pieces_leaves_some_empty() {
        let plan = Plan::from_names([("m", vec!["only"])]);
        assert!(plan.shard(Shard { index: 1, count: 2 }).is_empty());
        assert_eq!(plan.shard(Shard { index: 2, count: 2 }).len(), 5);
    }

    #[test]
    fn shard_arguments_say_what_is_wrong() {
        assert_eq!("2/3".parse::<Shard>(), Ok(Shard { index: 2, count: 3 }));
        assert!("0/3".parse::<Shard>().unwrap_err().contains("K goes from 1 to N"));
        assert!("4/3".parse::<Shard>().unwrap_err().contains("K goes from 1 to N"));
        assert!("2".parse::<Shard>().unwrap_err().contains("e.g. --shard 2/3"));
    }
}
