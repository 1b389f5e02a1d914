//! Full cost per unit due of a version 2 plan, by version 1's rule
//! (`crate::explain::cost_per_unit`) extended over the periods.
//!
//! What-if sweeps and threshold advice read a sku's cost per unit from the
//! plan, so a version 2 plan fills it the same way: the sku's production and
//! setups (a setup in every period its line runs), its share of each
//! material's purchase, ordering and holding (holding summed over the
//! periods) in proportion to the material it consumes, and its own lateness
//! (a cost only that sku causes), divided by its total due.

use crate::plan::NamedValues;
use crate::validate::ValidatedScenario;

use super::{backlog, Schedule};

pub(crate) fn cost_per_unit(v: &ValidatedScenario, d: &Schedule) -> NamedValues {
    let s = v.scenario();
    let used = d.consumption(v);
    let stock = d.stock(v);
    let mut material_money = vec![0.0; s.materials.len()];
    for orders in &d.buy {
        for (o, b) in v.offers().iter().zip(orders) {
            if let Some((k, q)) = b {
                let offer = v.offer(*o);
                material_money[o.material] += offer.breaks[*k].unit_price * q + offer.order_cost;
            }
        }
    }
    for (m, mat) in s.materials.iter().enumerate() {
        material_money[m] += mat.holding_cost * stock[m].iter().map(|q| q.max(0.0)).sum::<f64>();
    }
    let per_material: Vec<f64> = used
        .iter()
        .zip(&material_money)
        .map(|(u, money)| {
            let total: f64 = u.iter().sum();
            if total > 0.0 {
                money / total
            } else {
                0.0
            }
        })
        .collect();
    let made = d.made(v);
    let mut money = vec![0.0; s.products.len()];
    for xs in &d.x {
        for (l, &q) in v.lines().iter().zip(xs) {
            if q > 0 {
                let line = v.line(*l);
                money[l.product] += line.unit_cost * q as f64 + line.setup_cost;
                for &(m, a) in v.bom(l.product) {
                    money[l.product] += a * q as f64 * per_material[m];
                }
            }
        }
    }
    NamedValues(
        s.products
            .iter()
            .enumerate()
            .map(|(p, prod)| {
                if let Some(late) = prod.late_cost {
                    money[p] += late * backlog(v.due(p), &made[p]).iter().sum::<i64>() as f64;
                }
                let due = v.total_due(p);
                let units = if due > 0 { due } else { made[p].iter().sum() };
                let c = if units > 0 {
                    money[p] / units as f64
                } else {
                    0.0
                };
                (prod.sku.clone(), c)
            })
            .collect(),
    )
}
