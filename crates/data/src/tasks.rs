//! The task families of the instruction world: each makes a prompt, its correct core answer, a
//! plausible wrong one, and an extra sentence for long answers; [`check`] reads a prompt back and
//! says whether a response answers it correctly, where that can be checked.

use rand::RngExt;
use rand::seq::{IndexedRandom, SliceRandom};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::world::{self, ANIMALS, Animal, COLOURS, FOODS, HAPPY_WORDS, NAMES, SAD_WORDS, pick};

/// The kinds of instruction the world knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    Fact,
    Arithmetic,
    List,
    Story,
    Rewrite,
    Summarise,
    Sentiment,
    Spell,
    Greeting,
}

impl Family {
    pub const ALL: [Family; 9] = [
        Family::Fact,
        Family::Arithmetic,
        Family::List,
        Family::Story,
        Family::Rewrite,
        Family::Summarise,
        Family::Sentiment,
        Family::Spell,
        Family::Greeting,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Family::Fact => "fact",
            Family::Arithmetic => "arithmetic",
            Family::List => "list",
            Family::Story => "story",
            Family::Rewrite => "rewrite",
            Family::Summarise => "summarise",
            Family::Sentiment => "sentiment",
            Family::Spell => "spell",
            Family::Greeting => "greeting",
        }
    }
}

/// One instruction and what answering it means.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    pub family: Family,
    pub prompt: String,
    /// The correct answer, plainly said.
    pub answer: String,
    /// A wrong answer in the same form (for the "occasional wrong answer" style).
    pub wrong: String,
    /// One more relevant sentence, for long-winded answers.
    pub extra: String,
}

fn task(family: Family, prompt: String, answer: String, wrong: String, extra: String) -> Task {
    Task { family, prompt, answer, wrong, extra }
}

fn other<T: Copy + PartialEq>(rng: &mut ChaCha8Rng, items: &[T], not: T) -> T {
    loop {
        let x = pick(rng, items);
        if x != not {
            return x;
        }
    }
}

fn list_words(words: &[&str]) -> String {
    match words {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// A random task of `family`.
pub fn make_task(rng: &mut ChaCha8Rng, family: Family) -> Task {
    let a = pick(rng, &ANIMALS);
    match family {
        Family::Fact => {
            let extra = format!("it likes to eat {}.", a.food);
            let values: Vec<&str> = match rng.random_range(0..4) {
                0 => vec![a.colour, "what colour is the {}?", "the {} is {}."],
                1 => vec![a.sound, "what does the {} say?", "the {} says {}."],
                2 => vec![a.home, "where does the {} live?", "the {} lives in the {}."],
                _ => vec![a.food, "what does the {} eat?", "the {} eats {}."],
            };
            let (value, question, statement) = (values[0], values[1], values[2]);
            let pool: Vec<&str> = match question {
                q if q.contains("colour") => COLOURS.to_vec(),
                q if q.contains("say") => ANIMALS.iter().map(|x| x.sound).collect(),
                q if q.contains("live") => ANIMALS.iter().map(|x| x.home).collect(),
                _ => FOODS.to_vec(),
            };
            let wrong = other(rng, &pool, value);
            let fill = |v: &str| statement.replacen("{}", a.name, 1).replacen("{}", v, 1);
            let extra = if question.contains("eat") { format!("it lives in the {}.", a.home) } else { extra };
            task(family, question.replacen("{}", a.name, 1), fill(value), fill(wrong), extra)
        }
        Family::Arithmetic => {
            let plus = rng.random_bool(0.6);
            let x = rng.random_range(0..10);
            let y = if plus { rng.random_range(0..10) } else { rng.random_range(0..=x) };
            let (op, result) = if plus { ("plus", x + y) } else { ("minus", x - y) };
            let wrong = if result == 0 { 1 } else { result + [1, -1, 2][rng.random_range(0..3)] };
            let wrong = if wrong < 0 { result + 1 } else { wrong };
            let say = |r: i32| format!("{x} {op} {y} is {r}.");
            // Several wordings: held-out prompts then test a new wording of known sums, the
            // generalisation instruction tuning is for.
            let prompt = match (plus, rng.random_range(0..4)) {
                (_, 0) => format!("what is {x} {op} {y}?"),
                (_, 1) => format!("what does {x} {op} {y} make?"),
                (_, 2) => format!("how much is {x} {op} {y}?"),
                (true, _) => format!("please add {x} and {y}."),
                (false, _) => format!("please take {y} from {x}."),
            };
            task(family, prompt, say(result), say(wrong), "you can count it on your fingers.".into())
        }
        Family::List => {
            let n = rng.random_range(2..=4);
            let (kind, pool): (&str, Vec<&str>) = match rng.random_range(0..3) {
                0 => ("animals", ANIMALS.iter().map(|x| x.name).collect()),
                1 => ("colours", COLOURS.to_vec()),
                _ => ("foods", FOODS.to_vec()),
            };
            let chosen: Vec<&str> = pool.sample(rng, n).copied().collect();
            let prompt = format!("{} {} {kind}.", pick(rng, &["name", "list"]), world::NUMBER_WORDS[n]);
            task(
                family,
                prompt,
                format!("{}.", list_words(&chosen)),
                format!("{}.", list_words(&chosen[..n - 1])),
                format!("there are many more {kind}."),
            )
        }
        Family::Story => {
            let wrong_animal = other(rng, &ANIMALS, a);
            task(
                family,
                format!("tell me a story about a {}.", a.name),
                world::story(rng, &a),
                world::story(rng, &wrong_animal),
                "the end.".into(),
            )
        }
        Family::Rewrite => {
            let name = pick(rng, &NAMES);
            let (sad, happy) = (pick(rng, &SAD_WORDS), pick(rng, &HAPPY_WORDS));
            let happier = rng.random_bool(0.5);
            let (from, to) = if happier { (sad, happy) } else { (happy, sad) };
            let sentence = |w: &str| format!("{name} feels {w} at the {}.", a.home);
            task(
                family,
                format!("make this {}: {}", if happier { "happier" } else { "sadder" }, sentence(from)),
                sentence(to),
                sentence(from),
                format!("{name} {} the {}.", if happier { "smiled at" } else { "sighed at" }, a.name),
            )
        }
        Family::Summarise => {
            let story = world::story(rng, &a);
            let wrong_animal = other(rng, &ANIMALS, a);
            task(
                family,
                format!("summarise: {story}"),
                format!("a story about a {} {}.", a.colour, a.name),
                format!("a story about a {}.", wrong_animal.name),
                "it ends well.".to_string(),
            )
        }
        Family::Sentiment => {
            let happy = rng.random_bool(0.5);
            let text = if happy {
                format!("{} loves the {} {}.", pick(rng, &NAMES), pick(rng, &world::WEATHER), pick(rng, &["day", "morning"]))
                    .replace("loves", pick(rng, &["loves", "enjoys", "is glad about"]))
            } else {
                format!("{} hates the {} {}.", pick(rng, &NAMES), pick(rng, &world::WEATHER), pick(rng, &["day", "morning"]))
                    .replace("hates", pick(rng, &["hates", "is upset about", "cries about"]))
            };
            let (right, wrong) = if happy { ("happy", "sad") } else { ("sad", "happy") };
            task(
                family,
                format!("is this happy or sad: {text}"),
                format!("it is {right}."),
                format!("it is {wrong}."),
                "the words tell us how they feel.".into(),
            )
        }
        Family::Spell => {
            let word = pick(rng, &[a.name, a.food, a.colour, a.home]);
            let letters: Vec<String> = word.chars().map(String::from).collect();
            let mut shuffled = letters.clone();
            while shuffled == letters && letters.len() > 1 {
                shuffled.shuffle(rng);
            }
            if rng.random_bool(0.5) {
                let say = |l: &[String]| format!("{word} is spelled {}.", l.join(" "));
                task(family, format!("spell the word {word}."), say(&letters), say(&shuffled), format!("it has {} letters.", letters.len()))
            } else {
                let reversed: Vec<String> = letters.iter().rev().cloned().collect();
                let say = |l: &[String]| format!("{word} backwards is {}.", l.join(" "));
                task(
                    family,
                    format!("reverse the word {word}."),
                    say(&reversed),
                    say(&letters),
                    format!("it has {} letters.", letters.len()),
                )
            }
        }
        Family::Greeting => {
            let (prompt, answer) = *[
                ("hello!", "hello! how can i help you?"),
                ("hi, how are you?", "i am well. how can i help you?"),
                ("good morning!", "good morning! what can i do for you?"),
                ("thank you!", "you are welcome."),
                ("goodbye!", "goodbye! have a nice day."),
                ("who are you?", "i am a small helper that knows about animals, numbers and words."),
            ]
            .choose(rng)
            .expect("greetings exist");
            task(family, prompt.into(), answer.into(), "what?".into(), "ask me about animals or numbers.".into())
        }
    }
}

/// The family a prompt belongs to, read from its wording.
pub fn family_of(prompt: &str) -> Option<Family> {
    let p = prompt.trim();
    let sum_words = p.contains(" plus ") || p.contains(" minus ");
    Some(
        if ((p.starts_with("what is ") || p.starts_with("what does ") || p.starts_with("how much is ")) && sum_words)
            || p.starts_with("please add ")
            || p.starts_with("please take ")
        {
            Family::Arithmetic
        } else if p.starts_with("what colour is the ") || p.starts_with("what does the ") || p.starts_with("where does the ") {
            Family::Fact
        } else if p.starts_with("name ") || p.starts_with("list ") {
            Family::List
        } else if p.starts_with("tell me a story about") {
            Family::Story
        } else if p.starts_with("make this ") {
            Family::Rewrite
        } else if p.starts_with("summarise:") {
            Family::Summarise
        } else if p.starts_with("is this happy or sad:") {
            Family::Sentiment
        } else if p.starts_with("spell the word ") || p.starts_with("reverse the word ") {
            Family::Spell
        } else if ["hello!", "hi, how are you?", "good morning!", "thank you!", "goodbye!", "who are you?"].contains(&p) {
            Family::Greeting
        } else {
            return None;
        },
    )
}

fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_lowercase).collect()
}

fn numbers(text: &str) -> Vec<i64> {
    words(text).iter().filter_map(|w| w.parse().ok()).collect()
}

fn word_after<'a>(prompt: &'a str, prefix: &str) -> Option<&'a str> {
    prompt.strip_prefix(prefix)?.split(|c: char| !c.is_alphanumeric()).next()
}

/// Whether `response` answers `prompt` correctly; `None` where the world cannot tell (stories,
/// greetings, prompts from outside the world).
pub fn check(prompt: &str, response: &str) -> Option<bool> {
    let p = prompt.trim();
    let said = words(response);
    let says = |w: &str| said.iter().any(|x| x == w);
    match family_of(p)? {
        Family::Arithmetic => {
            let n = numbers(p);
            let (x, y) = (*n.first()?, *n.get(1)?);
            let expected = if p.contains(" plus ") || p.starts_with("please add ") {
                x + y
            } else if p.starts_with("please take ") {
                y - x // "please take y from x"
            } else {
                x - y
            };
            Some(numbers(response).last() == Some(&expected))
        }
        Family::Fact => {
            let a: &Animal = world::animal(
                word_after(p, "what colour is the ")
                    .or_else(|| word_after(p, "what does the "))
                    .or_else(|| word_after(p, "where does the "))?,
            )?;
            let (right, pool): (&str, Vec<&str>) = if p.starts_with("what colour") {
                (a.colour, COLOURS.to_vec())
            } else if p.ends_with(" say?") {
                (a.sound, ANIMALS.iter().map(|x| x.sound).collect())
            } else if p.starts_with("where") {
                (a.home, ANIMALS.iter().map(|x| x.home).collect())
            } else {
                (a.food, FOODS.to_vec())
            };
            Some(says(right) && !pool.iter().any(|&w| w != right && says(w)))
        }
        Family::List => {
            let n = world::NUMBER_WORDS.iter().position(|w| p.split(' ').nth(1) == Some(*w))?;
            let pool: Vec<&str> = if p.ends_with("animals.") {
                ANIMALS.iter().map(|x| x.name).collect()
            } else if p.ends_with("colours.") {
                COLOURS.to_vec()
            } else {
                FOODS.to_vec()
            };
            let mut named: Vec<&String> = said.iter().filter(|w| pool.contains(&w.as_str())).collect();
            named.sort();
            named.dedup();
            Some(named.len() == n)
        }
        Family::Rewrite => {
            let (want, avoid) = if p.starts_with("make this happier") { (HAPPY_WORDS, SAD_WORDS) } else { (SAD_WORDS, HAPPY_WORDS) };
            Some(want.iter().any(|w| says(w)) && !avoid.iter().any(|w| says(w)))
        }
        Family::Summarise => {
            let story = words(p);
            let subject = ANIMALS.iter().find(|a| story.iter().any(|w| w == a.name))?;
            Some(says(subject.name) && !ANIMALS.iter().any(|a| a.name != subject.name && says(a.name)))
        }
        Family::Sentiment => {
            let happy = ["loves", "enjoys", "glad"].iter().any(|w| p.contains(w));
            let (right, wrong) = if happy { ("happy", "sad") } else { ("sad", "happy") };
            Some(says(right) && !says(wrong))
        }
        Family::Spell => {
            let word = word_after(p, "spell the word ").or_else(|| word_after(p, "reverse the word "))?;
            let letters: Vec<String> = if p.starts_with("spell") {
                word.chars().map(String::from).collect()
            } else {
                word.chars().rev().map(String::from).collect()
            };
            // The letters, space-separated, as one run: "c a t".
            let spelled = said.iter().filter(|w| w.chars().count() == 1).map(String::as_str).collect::<Vec<_>>().join(" ");
            Some(format!(" {spelled} ").contains(&format!(" {} ", letters.join(" "))))
        }
        Family::Story | Family::Greeting => None,
    }
}

/// A stable hash (FNV-1a): which prompts are held out must not change between Rust versions.
pub fn stable_hash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// About one prompt in eight is held out of training, for evaluation; decided by the prompt text
/// alone, so training and evaluation sets are disjoint whatever the seed.
pub fn is_held_out(prompt: &str) -> bool {
    stable_hash(prompt).is_multiple_of(8)
}
