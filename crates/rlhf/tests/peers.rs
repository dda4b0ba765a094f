//! Training shared between peers (the page's workers), simulated in one thread: every trainer's
//! copies end each step with the same weights, bit for bit, whatever the number of peers; sharded
//! steps compute the same update as a trainer alone (up to float rounding); and a peer that stops
//! turns the step into an error instead of a hang.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Poll, Waker};

mod common;

use common::{lm_bytes, models};
use tinyrlhf_model::ScalarModel;
use tinyrlhf_rlhf::parallel::peers::Gathered;
use tinyrlhf_rlhf::{
    DpoConfig, DpoTrainer, GroupConfig, GroupMethod, GroupTrainer, Peers, PpoConfig, PpoModels, PpoTrainer, RewardConfig, RewardTrainer,
    TokenRanking, TrainError, TrainSettings, Trainer,
};

const PAD: u32 = 0;
const EOS: u32 = 1;

/// Peers in one thread: an exchange waits until every peer has sent its part for the round, or
/// fails once one has been marked stopped.
struct Board {
    parts: Vec<Option<Vec<u8>>>,
    round: Vec<Vec<u8>>,
    taken: usize,
    wakers: Vec<Waker>,
    stopped: Option<usize>,
}

struct LocalPeer {
    rank: usize,
    count: usize,
    board: Rc<RefCell<Board>>,
}

fn local_peers(count: usize) -> Vec<Rc<LocalPeer>> {
    let board = Rc::new(RefCell::new(Board { parts: vec![None; count], round: vec![], taken: 0, wakers: vec![], stopped: None }));
    (0..count).map(|rank| Rc::new(LocalPeer { rank, count, board: board.clone() })).collect()
}

impl Peers for LocalPeer {
    fn rank(&self) -> usize {
        self.rank
    }

    fn count(&self) -> usize {
        self.count
    }

    fn all_gather(&self, part: Vec<u8>) -> Gathered<'_> {
        let mut part = Some(part);
        Box::pin(std::future::poll_fn(move |cx| {
            let mut board = self.board.borrow_mut();
            if let Some(rank) = board.stopped {
                return Poll::Ready(Err(format!("worker {rank} stopped")));
            }
            if let Some(part) = part.take() {
                board.parts[self.rank] = Some(part);
                if board.parts.iter().all(Option::is_some) {
                    board.round = board.parts.iter_mut().filter_map(Option::take).collect();
                    board.taken = 0;
                    board.wakers.drain(..).for_each(Waker::wake);
                }
            }
            if board.round.len() == self.count && board.parts[self.rank].is_none() {
                let round = board.round.clone();
                board.taken += 1;
                if board.taken == self.count {
                    board.round.clear();
                }
                return Poll::Ready(Ok(round));
            }
            board.wakers.push(cx.waker().clone());
            Poll::Pending
        }))
    }
}

/// Runs the futures side by side in this thread, polling each in turn, and returns their outputs.
fn side_by_side<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    pollster::block_on(std::future::poll_fn(move |cx| {
        for (f, slot) in futures.iter_mut().zip(out.iter_mut()) {
            if slot.is_none()
                && let Poll::Ready(v) = f.as_mut().poll(cx)
            {
                *slot = Some(v);
            }
        }
        if out.iter().all(Option::is_some) { Poll::Ready(out.iter_mut().filter_map(Option::take).collect()) } else { Poll::Pending }
    }))
}

fn scalar_bytes(model: &ScalarModel) -> Vec<u8> {
    pollster::block_on(tinyrlhf_model::save_scalar_model(model)).unwrap()
}

/// Answers with more 7s are better.
fn ranking(p: u32) -> TokenRanking {
    TokenRanking {
        sequences: vec![vec![2, p, 3, 7, 7, EOS], vec![2, p, 3, 7, 9, EOS], vec![2, p, 3, 9, 9, EOS]],
        order: vec![0, 1, 2],
        prompt_len: 3,
    }
}

fn prompts() -> Vec<Vec<u32>> {
    (0..12u32).map(|i| vec![2, 4 + i % 7, 5 + i % 11, 3]).collect()
}

fn reward_trainers(count: usize, batch_size: usize) -> Vec<RewardTrainer> {
    let (config, sft, _) = models(31);
    // Every copy starts from the same weights, as the page's workers do (loaded from the same bytes).
    let start = ScalarModel::new(sft);
    scalar_bytes(&start);
    let settings = RewardConfig {
        epochs: 2,
        batch_size,
        train: TrainSettings { lr: 3e-3, ..RewardConfig::default().train },
        ..RewardConfig::default()
    };
    let train: Vec<TokenRanking> = (10..17).map(ranking).collect();
    let held_out: Vec<TokenRanking> = (20..23).map(ranking).collect();
    local_peers(count)
        .into_iter()
        .map(|p| {
            let mut t =
                RewardTrainer::from_scalar_model(start.clone(), config.clone(), train.clone(), held_out.clone(), PAD, settings.clone())
                    .unwrap();
            if count > 1 {
                t.set_peers(p);
            }
            t
        })
        .collect()
}

#[test]
fn reward_model_copies_stay_identical_and_match_a_trainer_alone() {
    let mut alone = reward_trainers(1, 4).remove(0);
    // Three peers on batches of four rankings: shards of two, one and one; the last batch (three
    // rankings) gives every peer one.
    let mut shared = reward_trainers(3, 4);
    while !alone.is_done() {
        let expected = pollster::block_on(alone.step()).unwrap();
        let stats = side_by_side(shared.iter_mut().map(|t| t.step()).collect());
        let weights: Vec<Vec<u8>> = shared.iter().map(|t| scalar_bytes(&t.model())).collect();
        assert!(weights.iter().all(|w| *w == weights[0]), "step {}: the copies differ", expected.step);
        for stats in stats {
            let stats = stats.unwrap();
            assert!((stats.loss - expected.loss).abs() < 1e-5, "loss {} alone {}", stats.loss, expected.loss);
            assert_eq!(stats.accuracy, expected.accuracy);
            assert_eq!(stats.pairs, expected.pairs);
            assert!((stats.grad_norm - expected.grad_norm).abs() < 1e-4 * expected.grad_norm.max(1.0));
            match (stats.held_out, expected.held_out) {
                (Some(a), Some(b)) => assert!((a.loss - b.loss).abs() < 1e-5 && a.accuracy == b.accuracy && a.pairs == b.pairs),
                (a, b) => assert_eq!(a.is_some(), b.is_some()),
            }
        }
    }
    let head = |m: ScalarModel| m.score.weight.val().into_data().try_to_vec::<f32>().unwrap();
    let diff = head(alone.model()).iter().zip(head(shared[0].model())).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(diff < 1e-5, "sharded training moved the head {diff} away from training alone");
}

#[test]
fn ppo_copies_end_every_iteration_with_identical_policies_and_value_models() {
    let (config, sft, reward) = models(32);
    let settings = PpoConfig {
        iterations: 3,
        batch_size: 6,
        minibatch_size: 3,
        ppo_epochs: 2,
        max_new_tokens: 8,
        train: TrainSettings { lr: 1e-3, ..PpoConfig::default().train },
        ..PpoConfig::default()
    };
    for count in [2, 4] {
        let mut trainers: Vec<PpoTrainer> = local_peers(count)
            .into_iter()
            .map(|p| {
                let models = PpoModels { sft: sft.clone(), config: config.clone(), reward: reward.clone(), value: None, policy: None };
                let mut t = PpoTrainer::new(models, prompts(), vec![], EOS, PAD, settings.clone()).unwrap();
                t.set_peers(p);
                t
            })
            .collect();
        for _ in 0..settings.iterations {
            let stats: Vec<_> = side_by_side(trainers.iter_mut().map(|t| t.step()).collect()).into_iter().map(Result::unwrap).collect();
            assert!(stats.iter().all(|s| s.restored.is_none()), "{:?}", stats[0].restored);
            assert!(stats.iter().all(|s| s.score == stats[0].score && s.kl == stats[0].kl && s.pg_loss == stats[0].pg_loss));
            assert!(stats[0].pg_loss.is_finite() && stats[0].vf_loss.is_finite());
            let policies: Vec<Vec<u8>> = trainers.iter().map(|t| lm_bytes(&t.policy())).collect();
            let values: Vec<Vec<u8>> = trainers.iter().map(|t| scalar_bytes(&t.value_model())).collect();
            assert!(policies.iter().all(|p| *p == policies[0]), "{count} peers: policies differ");
            assert!(values.iter().all(|v| *v == values[0]), "{count} peers: value models differ");
        }
        assert_ne!(lm_bytes(&trainers[0].policy()), lm_bytes(&sft), "the policy moved");
    }
}

#[test]
fn grpo_rloo_and_dpo_copies_stay_identical() {
    let (config, sft, reward) = models(33);
    for method in [GroupMethod::Grpo, GroupMethod::Rloo] {
        let settings = GroupConfig {
            method,
            iterations: 2,
            prompts_per_iteration: 2,
            samples_per_prompt: 3,
            max_new_tokens: 6,
            train: TrainSettings { lr: 1e-3, ..GroupConfig::default().train },
            ..GroupConfig::default()
        };
        let mut trainers: Vec<GroupTrainer> = local_peers(4)
            .into_iter()
            .map(|p| {
                let mut t =
                    GroupTrainer::new(sft.clone(), None, config.clone(), reward.clone(), prompts(), EOS, PAD, settings.clone()).unwrap();
                t.set_peers(p);
                t
            })
            .collect();
        for _ in 0..2 {
            let stats: Vec<_> = side_by_side(trainers.iter_mut().map(|t| t.step()).collect()).into_iter().map(Result::unwrap).collect();
            assert!(stats.iter().all(|s| s.restored.is_none() && s.loss == stats[0].loss), "{method:?}");
            let policies: Vec<Vec<u8>> = trainers.iter().map(|t| lm_bytes(&t.policy())).collect();
            assert!(policies.iter().all(|p| *p == policies[0]), "{method:?}: policies differ");
        }
    }
    let train: Vec<TokenRanking> = (10..17).map(ranking).collect();
    let settings =
        DpoConfig { epochs: 1, batch_size: 4, train: TrainSettings { lr: 3e-3, ..DpoConfig::default().train }, ..DpoConfig::default() };
    let mut alone = pollster::block_on(DpoTrainer::new(sft.clone(), config.clone(), train.clone(), vec![], PAD, settings.clone())).unwrap();
    let mut trainers: Vec<DpoTrainer> = local_peers(3)
        .into_iter()
        .map(|p| {
            let mut t =
                pollster::block_on(DpoTrainer::new(sft.clone(), config.clone(), train.clone(), vec![], PAD, settings.clone())).unwrap();
            t.set_peers(p);
            t
        })
        .collect();
    while !alone.is_done() {
        let expected = pollster::block_on(alone.step()).unwrap();
        for stats in side_by_side(trainers.iter_mut().map(|t| t.step()).collect()) {
            let stats = stats.unwrap();
            assert!((stats.loss - expected.loss).abs() < 1e-6, "DPO loss {} alone {}", stats.loss, expected.loss);
        }
        let policies: Vec<Vec<u8>> = trainers.iter().map(|t| lm_bytes(&t.policy())).collect();
        assert!(policies.iter().all(|p| *p == policies[0]), "DPO: policies differ");
    }
}

#[test]
fn a_peer_that_stops_makes_the_step_an_error_not_a_hang() {
    let mut trainers = reward_trainers(2, 4);
    let peers = local_peers(2);
    peers[0].board.borrow_mut().stopped = Some(1);
    trainers[0].set_peers(peers[0].clone());
    let error = pollster::block_on(trainers[0].step()).unwrap_err();
    assert!(matches!(&error, TrainError::Peers(why) if why.contains("worker 1 stopped")), "{error}");
}
