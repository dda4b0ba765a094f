//! The small world every text is about: animals with a colour, a sound, a home and a food; the
//! weather; numbers. Fixed facts, so a model can learn them and a labeler can check them.
//! Pretraining text is plain sentences and tiny stories about this world — text a base model learns
//! to continue, with no instructions in it.

use rand::RngExt;
use rand::seq::IndexedRandom;
use rand_chacha::ChaCha8Rng;

/// One animal of the world and its facts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Animal {
    pub name: &'static str,
    pub colour: &'static str,
    pub sound: &'static str,
    pub home: &'static str,
    pub food: &'static str,
}

pub const ANIMALS: [Animal; 12] = [
    Animal { name: "cat", colour: "black", sound: "meow", home: "house", food: "fish" },
    Animal { name: "dog", colour: "brown", sound: "woof", home: "yard", food: "bones" },
    Animal { name: "cow", colour: "white", sound: "moo", home: "farm", food: "grass" },
    Animal { name: "duck", colour: "yellow", sound: "quack", home: "pond", food: "bread" },
    Animal { name: "frog", colour: "green", sound: "ribbit", home: "pond", food: "flies" },
    Animal { name: "fox", colour: "red", sound: "yip", home: "forest", food: "berries" },
    Animal { name: "owl", colour: "grey", sound: "hoot", home: "forest", food: "mice" },
    Animal { name: "pig", colour: "pink", sound: "oink", home: "farm", food: "apples" },
    Animal { name: "bee", colour: "yellow", sound: "buzz", home: "garden", food: "honey" },
    Animal { name: "horse", colour: "brown", sound: "neigh", home: "field", food: "hay" },
    Animal { name: "sheep", colour: "white", sound: "baa", home: "field", food: "grass" },
    Animal { name: "bird", colour: "blue", sound: "tweet", home: "tree", food: "seeds" },
];

pub const COLOURS: [&str; 10] = ["red", "blue", "green", "yellow", "white", "black", "brown", "pink", "grey", "orange"];
pub const FOODS: [&str; 10] = ["apples", "bread", "cake", "soup", "rice", "fish", "berries", "honey", "carrots", "cheese"];
pub const PLACES: [&str; 9] = ["park", "farm", "forest", "pond", "garden", "field", "house", "beach", "hill"];
pub const WEATHER: [&str; 6] = ["sunny", "rainy", "windy", "cold", "warm", "snowy"];
pub const NAMES: [&str; 10] = ["tom", "ann", "sam", "lily", "ben", "mia", "max", "zoe", "leo", "ella"];
pub const HAPPY_WORDS: [&str; 6] = ["happy", "glad", "joyful", "cheerful", "pleased", "delighted"];
pub const SAD_WORDS: [&str; 6] = ["sad", "gloomy", "unhappy", "upset", "lonely", "tired"];
pub const NUMBER_WORDS: [&str; 19] = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
];

pub fn animal(name: &str) -> Option<&'static Animal> {
    ANIMALS.iter().find(|a| a.name == name)
}

pub fn pick<T: Copy>(rng: &mut ChaCha8Rng, items: &[T]) -> T {
    *items.choose(rng).expect("lists are not empty")
}

/// One plain sentence about the world: a fact, an arithmetic fact, or an everyday remark.
pub fn sentence(rng: &mut ChaCha8Rng) -> String {
    let a = pick(rng, &ANIMALS);
    // Arithmetic facts are frequent (six in fourteen): a tiny model needs many sightings of each
    // of the hundred sums before it can answer "what is 5 plus 7?" from memory.
    match rng.random_range(0..14) {
        0 => format!("the {} is {}.", a.name, a.colour),
        1 => format!("the {} says {}.", a.name, a.sound),
        2 => format!("the {} lives in the {}.", a.name, a.home),
        3 => format!("the {} likes to eat {}.", a.name, a.food),
        4..=7 => {
            let (x, y) = (rng.random_range(0..10), rng.random_range(0..10));
            format!("{x} plus {y} is {}.", x + y)
        }
        8 | 9 => {
            let x = rng.random_range(0..10);
            let y = rng.random_range(0..=x);
            format!("{x} minus {y} is {}.", x - y)
        }
        10 => format!("today it is {} at the {}.", pick(rng, &WEATHER), pick(rng, &PLACES)),
        11 => format!("{} has {} {}.", pick(rng, &NAMES), NUMBER_WORDS[rng.random_range(2..8)], pick(rng, &FOODS)),
        12 => format!("{} feels {} today.", pick(rng, &NAMES), pick(rng, &[HAPPY_WORDS, SAD_WORDS].concat())),
        _ => format!("the {} {} sat near the {}.", pick(rng, &COLOURS), a.name, pick(rng, &PLACES)),
    }
}

/// A tiny story: three to six sentences about one character.
pub fn story(rng: &mut ChaCha8Rng, animal: &Animal) -> String {
    let name = pick(rng, &NAMES);
    let mood = pick(rng, &HAPPY_WORDS);
    let mut s = vec![
        format!("once upon a time a {} {} lived in the {}.", animal.colour, animal.name, animal.home),
        format!("one {} day the {} met {}.", pick(rng, &WEATHER), animal.name, name),
    ];
    let middle = [
        format!("they shared some {}.", animal.food),
        format!("the {} said {} and {} laughed.", animal.name, animal.sound, name),
        format!("they walked to the {} together.", pick(rng, &PLACES)),
        format!("{name} found a {} ball.", pick(rng, &COLOURS)),
    ];
    let extra = rng.random_range(1..=3);
    s.extend(middle.sample(rng, extra).cloned());
    s.push(format!("in the end the {} was {mood}.", animal.name));
    s.join(" ")
}

/// Pretraining text: `n` lines, each a few sentences or a tiny story, no instructions anywhere.
pub fn pretraining_text(rng: &mut ChaCha8Rng, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| {
            if rng.random_bool(0.3) {
                let a = pick(rng, &ANIMALS);
                story(rng, &a)
            } else {
                let k = rng.random_range(2..=4);
                (0..k).map(|_| sentence(rng)).collect::<Vec<_>>().join(" ")
            }
        })
        .collect()
}
