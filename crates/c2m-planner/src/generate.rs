//! Seeded random scenarios for the benchmark and the cross-check tests.
//!
//! The same seed and size always give the same scenario, on every machine:
//! the generator carries its own small PRNG (splitmix64) rather than
//! depending on a crate whose streams may change between versions.

use std::collections::BTreeMap;

use crate::scenario::{
    Due, Factory, Horizon, Line, Material, Offer, PriceBreak, Product, Receipt, Scenario, Supplier,
};

/// The shape of a generated scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size {
    pub products: usize,
    pub factories: usize,
    pub materials: usize,
    /// Each offer gets between 1 and this many price breaks.
    pub max_breaks: usize,
}

impl Size {
    /// About 5 products, 2 factories, 10 materials.
    pub const SMALL: Size = Size {
        products: 5,
        factories: 2,
        materials: 10,
        max_breaks: 4,
    };
    /// About 15 products, 5 factories, 30 materials.
    pub const MEDIUM: Size = Size {
        products: 15,
        factories: 5,
        materials: 30,
        max_breaks: 4,
    };
    /// About 60 products, 12 factories, 150 materials.
    pub const LARGE: Size = Size {
        products: 60,
        factories: 12,
        materials: 150,
        max_breaks: 4,
    };
}

/// A tiny deterministic PRNG (splitmix64).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Uniform in `[lo, hi)`.
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }
    /// Uniform integer in `[lo, hi]`.
    pub fn int(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next_u64() % ((hi - lo + 1) as u64)) as i64
    }
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
    /// `k` distinct indices from `0..n`.
    pub fn pick(&mut self, n: usize, k: usize) -> Vec<usize> {
        let mut all: Vec<usize> = (0..n).collect();
        for i in 0..k.min(n) {
            let j = i + (self.next_u64() % (n - i) as u64) as usize;
            all.swap(i, j);
        }
        all.truncate(k.min(n));
        all.sort_unstable();
        all
    }
}

fn round_to(v: f64, step: f64) -> f64 {
    (v / step).round() * step
}

/// How a generator draws its suppliers and their offers. The two generators
/// differ only in these numbers; each draws in the same order, so a seed's
/// scenario is the same as it was before the two shared this code.
struct SupplyShape {
    /// Lead days of the slow quarter of the suppliers, and of the rest.
    slow_lead: (i64, i64),
    fast_lead: (i64, i64),
    /// Every material gets an offer from a supplier at most this many days away.
    reachable_days: i64,
    /// The first break above the base price, as a share of the need, and how
    /// each next break's quantity grows and its price falls.
    first_break: (f64, f64),
    break_growth: (f64, f64),
    break_discount: (f64, f64),
    /// An MOQ (30 % of offers) and a cap (30 % of the offers that may be capped),
    /// as shares of the need.
    moq: (f64, f64),
    cap: (f64, f64),
    order_cost_chance: f64,
}

/// The single-cycle generator's suppliers: needs are what the horizon's
/// demand takes beyond the stock on hand.
const SUPPLY_V1: SupplyShape = SupplyShape {
    slow_lead: (16, 30),
    fast_lead: (2, 14),
    reachable_days: 15,
    first_break: (0.3, 0.8),
    break_growth: (1.4, 2.5),
    break_discount: (0.85, 0.97),
    moq: (0.1, 0.4),
    cap: (0.5, 1.2),
    order_cost_chance: 0.6,
};

/// The time-phased generator's suppliers: needs are one batch's, so breaks
/// run from about one batch to the whole horizon.
const SUPPLY_V2: SupplyShape = SupplyShape {
    slow_lead: (15, 30),
    fast_lead: (2, 12),
    reachable_days: 7,
    first_break: (0.8, 1.6),
    break_growth: (1.5, 2.5),
    break_discount: (0.88, 0.97),
    moq: (0.1, 0.5),
    cap: (0.8, 2.0),
    order_cost_chance: 0.7,
};

/// About one supplier per two materials, each material offered by one to three
/// of them, one of which is within `reachable_days` and never capped (caps make
/// plans split, not fail). `need[m]` scales material `m`'s breaks, MOQs, caps
/// and packs.
fn suppliers(
    r: &mut Rng,
    materials: &[Material],
    base_price: &[f64],
    need: &[f64],
    max_breaks: usize,
    shape: &SupplyShape,
) -> Vec<Supplier> {
    let n_sup = (materials.len() / 2).max(2);
    let lead: Vec<i64> = (0..n_sup)
        .map(|s| {
            let (lo, hi) = if s % 4 == 3 {
                shape.slow_lead
            } else {
                shape.fast_lead
            };
            r.int(lo, hi)
        })
        .collect();
    let reachable = |s: usize| lead[s] <= shape.reachable_days;
    let mut offers: Vec<Vec<Offer>> = vec![Vec::new(); n_sup];
    for (m, material) in materials.iter().enumerate() {
        let need = need[m];
        let n_off = r.int(1, 3) as usize;
        let mut chosen = r.pick(n_sup, n_off);
        if !chosen.iter().any(|&s| reachable(s)) {
            chosen[0] = (0..n_sup)
                .map(|k| (m * 7 + k) % n_sup)
                .find(|&s| reachable(s))
                .unwrap_or(0);
        }
        chosen.sort_unstable();
        chosen.dedup();
        let anchor = chosen.iter().copied().find(|&s| reachable(s));
        for &s in &chosen {
            let n_breaks = r.int(1, max_breaks as i64) as usize;
            let mut breaks = vec![PriceBreak {
                min_qty: 0.0,
                unit_price: round_to(base_price[m] * r.range(0.9, 1.2), 1.0),
            }];
            let mut q = need * r.range(shape.first_break.0, shape.first_break.1);
            for _ in 1..n_breaks {
                let last = breaks[breaks.len() - 1];
                let min_qty = round_to(q, 10.0).max(last.min_qty + 10.0);
                let unit_price = round_to(
                    last.unit_price * r.range(shape.break_discount.0, shape.break_discount.1),
                    1.0,
                );
                breaks.push(PriceBreak {
                    min_qty,
                    unit_price,
                });
                q *= r.range(shape.break_growth.0, shape.break_growth.1);
            }
            let pack_size = if r.chance(0.5) {
                let p = [5.0, 10.0, 25.0, 50.0, 100.0][r.int(0, 4) as usize];
                Some(if need < 20.0 * p { 1.0 } else { p })
            } else {
                None
            };
            let capped = Some(s) != anchor;
            offers[s].push(Offer {
                material: material.id.clone(),
                moq: if r.chance(0.3) {
                    round_to(need * r.range(shape.moq.0, shape.moq.1), 5.0)
                } else {
                    0.0
                },
                pack_size,
                max_qty: if capped && r.chance(0.3) {
                    Some(round_to(need * r.range(shape.cap.0, shape.cap.1), 10.0).max(10.0))
                } else {
                    None
                },
                order_cost: if r.chance(shape.order_cost_chance) {
                    round_to(r.range(1000.0, 50_000.0), 100.0)
                } else {
                    0.0
                },
                breaks,
            });
        }
    }
    offers
        .into_iter()
        .enumerate()
        .map(|(s, offers)| Supplier {
            id: format!("s{s:03}"),
            lead_days: lead[s],
            offers,
        })
        .collect()
}

/// A realistic-looking random scenario: products with 2 to 6 materials,
/// 1 to 3 lines each, factories loaded to roughly 60-90 %, 1 to 3 offers per
/// material from suppliers of varied lead times (some past the 15-day
/// deadline), with MOQs, packs, caps, order costs and 1 to `max_breaks`
/// all-units price breaks. Usually feasible, not always.
pub fn random_scenario(seed: u64, size: Size) -> Scenario {
    let mut r = Rng::new(seed);
    let materials: Vec<Material> = (0..size.materials)
        .map(|i| Material {
            id: format!("m{i:03}"),
            unit: if i % 3 == 0 { "pcs" } else { "kg" }.to_string(),
            on_hand: 0.0,
            holding_cost: 0.0,
            receipts: Vec::new(),
        })
        .collect();
    let base_price: Vec<f64> = (0..size.materials)
        .map(|_| round_to(r.range(50.0, 3000.0), 1.0))
        .collect();

    let mut products = Vec::new();
    let mut usage = vec![0.0; size.materials];
    for i in 0..size.products {
        let demand = r.int(100, 2000);
        let n_mat = r.int(2, 6.min(size.materials as i64)) as usize;
        let mut bom = BTreeMap::new();
        for m in r.pick(size.materials, n_mat) {
            let a = if m % 3 == 0 {
                r.int(1, 2) as f64
            } else {
                round_to(r.range(0.01, 1.5), 0.01)
            };
            usage[m] += a * demand as f64;
            bom.insert(materials[m].id.clone(), a);
        }
        products.push(Product::with_demand(format!("p{i:03}"), demand, bom));
    }
    let mut materials = materials;
    for (m, mat) in materials.iter_mut().enumerate() {
        if r.chance(0.4) {
            mat.on_hand = round_to(usage[m] * r.range(0.05, 0.6), 1.0);
        }
        mat.holding_cost = round_to(base_price[m] * r.range(0.01, 0.08), 0.1);
    }

    // Lines: each product at 1 to 3 factories.
    let mut lines: Vec<Vec<Line>> = vec![Vec::new(); size.factories];
    let mut load = vec![0.0; size.factories];
    for p in &products {
        let mat_cost: f64 = p
            .bom
            .iter()
            .map(|(id, a)| {
                let m = materials.iter().position(|x| &x.id == id).unwrap_or(0);
                a * materials[m].holding_cost
            })
            .sum();
        let n = r.int(1, 3.min(size.factories as i64)) as usize;
        let at = r.pick(size.factories, n);
        for &f in &at {
            let hours_per_unit = round_to(r.range(0.02, 0.12), 0.005);
            let setup_hours = round_to(r.range(1.0, 8.0), 0.5);
            load[f] += (hours_per_unit * p.demand as f64) / n as f64 + setup_hours;
            lines[f].push(Line {
                sku: p.sku.clone(),
                // At least the holding cost of its materials, so that
                // over-producing to use up stock never pays (see the model).
                unit_cost: round_to(r.range(300.0, 2000.0), 10.0).max(mat_cost.ceil()),
                setup_cost: round_to(r.range(10_000.0, 150_000.0), 1000.0),
                min_run: if r.chance(0.6) {
                    round_to(r.range(0.0, p.demand as f64 / 3.0), 10.0) as i64
                } else {
                    0
                },
                hours_per_unit,
                setup_hours,
            });
        }
    }
    let factories: Vec<Factory> = lines
        .into_iter()
        .enumerate()
        .map(|(f, lines)| Factory {
            id: format!("f{f:02}"),
            capacity_hours: round_to((load[f] * r.range(1.15, 1.7)).max(8.0), 1.0),
            calendar: None,
            lines,
        })
        .collect();

    // Suppliers: about one per two materials; lead times of 2 to 30 days, a
    // quarter of them slow (16 to 30 days), some past the 15-day deadline.
    let need: Vec<f64> = (0..size.materials)
        .map(|m| (usage[m] - materials[m].on_hand).max(1.0))
        .collect();
    let suppliers = suppliers(
        &mut r,
        &materials,
        &base_price,
        &need,
        size.max_breaks,
        &SUPPLY_V1,
    );

    Scenario {
        name: format!(
            "random-{}x{}x{}-{seed}",
            size.products, size.factories, size.materials
        ),
        currency: "CNY".to_string(),
        material_deadline_days: Some(15),
        horizon: None,
        products,
        materials,
        factories,
        suppliers,
    }
}

/// The shape of a generated time-phased (version 2) scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimedSize {
    pub products: usize,
    pub factories: usize,
    pub materials: usize,
    pub periods: usize,
    /// Each offer gets between 1 and this many price breaks.
    pub max_breaks: usize,
}

impl TimedSize {
    /// About 4 products, 2 factories, 6 materials, 4 periods: for tests.
    pub const SMALL: TimedSize = TimedSize {
        products: 4,
        factories: 2,
        materials: 6,
        periods: 4,
        max_breaks: 3,
    };
    /// About 15 products, 5 factories, 30 materials, 8 weekly periods.
    pub const MEDIUM: TimedSize = TimedSize {
        products: 15,
        factories: 5,
        materials: 30,
        periods: 8,
        max_breaks: 4,
    };
    /// About 60 products, 12 factories, 150 materials, 12 weekly periods.
    pub const LARGE: TimedSize = TimedSize {
        products: 60,
        factories: 12,
        materials: 150,
        periods: 12,
        max_breaks: 4,
    };
}

/// A realistic-looking random time-phased scenario over weekly periods.
///
/// Products have one to three batches due from period 2 on (half of them
/// may be late, at a late cost per unit and week); factories are loaded to
/// roughly 55-80 % of their weekly hours, some closed one week; materials
/// have weekly holding costs of 0.2-1 % of their price, some stock on hand
/// and some receipts already ordered; every material has an offer arriving
/// within a week, and one to three offers in all with lead times of 2 to 30
/// days, MOQs, packs, caps per order, order costs and price breaks placed
/// between one period's need and the whole horizon's, so that buying for
/// several batches at once reaches a better price but holds stock. Usually
/// feasible, not always.
pub fn random_timed_scenario(seed: u64, size: TimedSize) -> Scenario {
    let mut r = Rng::new(seed ^ 0x5eed_0002);
    let t_n = size.periods.max(1);
    let mut materials: Vec<Material> = (0..size.materials)
        .map(|i| Material {
            id: format!("m{i:03}"),
            unit: if i % 3 == 0 { "pcs" } else { "kg" }.to_string(),
            on_hand: 0.0,
            holding_cost: 0.0,
            receipts: Vec::new(),
        })
        .collect();
    let base_price: Vec<f64> = (0..size.materials)
        .map(|_| round_to(r.range(50.0, 3000.0), 1.0))
        .collect();
    for (m, mat) in materials.iter_mut().enumerate() {
        mat.holding_cost = round_to(base_price[m] * r.range(0.002, 0.01), 0.1);
    }

    let first_due = 2.min(t_n - 1) as i64;
    let mut products = Vec::new();
    // usage[m][t]: material needed by the dues of period t.
    let mut usage = vec![vec![0.0; t_n]; size.materials];
    for i in 0..size.products {
        let n_mat = r.int(2, 6.min(size.materials as i64)) as usize;
        let mut bom = BTreeMap::new();
        for m in r.pick(size.materials, n_mat) {
            let a = if m % 3 == 0 {
                r.int(1, 2) as f64
            } else {
                round_to(r.range(0.01, 1.5), 0.01)
            };
            bom.insert(materials[m].id.clone(), a);
        }
        let n_due = r.int(1, 3.min(t_n as i64 - first_due).max(1)) as usize;
        let mut periods: Vec<i64> = r
            .pick((t_n as i64 - first_due) as usize, n_due)
            .into_iter()
            .map(|k| k as i64 + first_due)
            .collect();
        periods.sort_unstable();
        let due: Vec<Due> = periods
            .into_iter()
            .map(|period| Due {
                period,
                quantity: r.int(100, 800),
            })
            .collect();
        for d in &due {
            for (id, a) in &bom {
                let m = materials.iter().position(|x| &x.id == id).unwrap_or(0);
                usage[m][d.period as usize] += a * d.quantity as f64;
            }
        }
        let late_cost = r
            .chance(0.5)
            .then(|| round_to(r.range(200.0, 2000.0), 10.0));
        let mut p = Product {
            sku: format!("p{i:03}"),
            demand: 0,
            bom,
            due,
            late_cost,
        };
        p.demand = p.total_due();
        products.push(p);
    }
    for (m, mat) in materials.iter_mut().enumerate() {
        let total: f64 = usage[m].iter().sum();
        if r.chance(0.4) {
            mat.on_hand = round_to(total * r.range(0.05, 0.3), 1.0);
        }
        if r.chance(0.2) {
            mat.receipts.push(Receipt {
                period: r.int(0, (t_n as i64 - 1).min(2)),
                quantity: round_to(total * r.range(0.05, 0.3), 1.0),
            });
        }
    }

    // Lines: each product at 1 to 3 factories.
    let mut lines: Vec<Vec<Line>> = vec![Vec::new(); size.factories];
    let mut load = vec![0.0; size.factories];
    for p in &products {
        let hold: f64 = p
            .bom
            .iter()
            .map(|(id, a)| {
                let m = materials.iter().position(|x| &x.id == id).unwrap_or(0);
                a * materials[m].holding_cost
            })
            .sum();
        let n = r.int(1, 3.min(size.factories as i64)) as usize;
        let at = r.pick(size.factories, n);
        let total = p.total_due() as f64;
        for &f in &at {
            let hours_per_unit = round_to(r.range(0.02, 0.12), 0.005);
            let setup_hours = round_to(r.range(1.0, 8.0), 0.5);
            load[f] += (hours_per_unit * total) / n as f64 + setup_hours * p.due.len() as f64;
            lines[f].push(Line {
                sku: p.sku.clone(),
                // At least the holding cost of its materials over the
                // horizon, so that over-producing to use up stock never
                // pays (see the model's bounds).
                unit_cost: round_to(r.range(300.0, 2000.0), 10.0).max((hold * t_n as f64).ceil()),
                setup_cost: round_to(r.range(10_000.0, 150_000.0), 1000.0),
                min_run: if r.chance(0.5) {
                    round_to(r.range(0.0, total / 4.0), 10.0) as i64
                } else {
                    0
                },
                hours_per_unit,
                setup_hours,
            });
        }
    }
    // Production happens in the periods from `first_due - 1` on, mostly.
    let working = (t_n as f64 - first_due as f64 + 1.0).max(1.0);
    let factories: Vec<Factory> = lines
        .into_iter()
        .enumerate()
        .map(|(f, lines)| {
            let weekly = round_to((load[f] / working * r.range(1.25, 1.8)).max(8.0), 1.0);
            let calendar = r.chance(0.3).then(|| {
                let closed = r.int(1, t_n as i64 - 1) as usize;
                (0..t_n)
                    .map(|t| if t == closed { 0.0 } else { weekly })
                    .collect()
            });
            Factory {
                id: format!("f{f:02}"),
                capacity_hours: weekly,
                calendar,
                lines,
            }
        })
        .collect();

    // Suppliers: about one per two materials; lead times of 2 to 30 days,
    // a quarter of them slow (2 to 4 weeks). Breaks from about one batch's
    // need to the horizon's.
    let per_batch: Vec<f64> = usage
        .iter()
        .map(|u| u.iter().sum::<f64>().max(1.0) / (t_n as f64 - first_due as f64).max(1.0))
        .collect();
    let suppliers = suppliers(
        &mut r,
        &materials,
        &base_price,
        &per_batch,
        size.max_breaks,
        &SUPPLY_V2,
    );

    Scenario {
        name: format!(
            "weeks-{}x{}x{}x{}-{seed}",
            size.products, size.factories, size.materials, t_n
        ),
        currency: "CNY".to_string(),
        material_deadline_days: None,
        horizon: Some(Horizon {
            periods: t_n as i64,
            period_days: 7,
        }),
        products,
        materials,
        factories,
        suppliers,
    }
}
