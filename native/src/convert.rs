//! State to Python objects (streams.state.UserState / AccountState, instants as int
//! nanoseconds or exact Fractions).

use crate::small_map::SmallMap;
use crate::state::{Account, Days, Inst, Key, Latest, Ms, User, When, NONE};
use crate::time::{I, INIT_FOLD, UNIT};
use pyo3::conversion::IntoPyObjectExt;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyInt, PyList, PyTuple};

/// The fold point before any record as Python holds it (`_Clock._init_clock`), in ns.
pub const INIT_FOLD_NS: I = -1_000_000_000_000_000_000_000_000_000_000;

/// The Python callables the conversions need.
pub struct Conv {
    pub restore_user: Py<PyAny>,
    pub restore_account: Py<PyAny>,
    /// attoseconds -> Python instant, when not whole nanoseconds
    pub fraction: Py<PyAny>,
}

impl Conv {
    /// A Python instant: whole nanoseconds as an int, else an exact Fraction.
    pub fn t<'py>(&self, py: Python<'py>, x: I) -> PyResult<Bound<'py, PyAny>> {
        if x == INIT_FOLD {
            return INIT_FOLD_NS.into_bound_py_any(py);
        }
        if x % UNIT == 0 {
            let ns = x / UNIT;
            match i64::try_from(ns) {
                Ok(v) => v.into_bound_py_any(py), // the common case: PyLong_FromLongLong
                Err(_) => ns.into_bound_py_any(py),
            }
        } else {
            self.fraction.bind(py).call1((x,))
        }
    }

    pub fn ot<'py>(&self, py: Python<'py>, x: Option<I>) -> PyResult<Bound<'py, PyAny>> {
        match x {
            Some(v) => self.t(py, v),
            None => Ok(py.None().into_bound(py)),
        }
    }

    /// A list of instants, None when empty.
    pub fn tlist<'py>(&self, py: Python<'py>, v: &[I]) -> PyResult<Bound<'py, PyAny>> {
        if v.is_empty() {
            return Ok(py.None().into_bound(py));
        }
        let items = v
            .iter()
            .map(|&x| self.t(py, x))
            .collect::<PyResult<Vec<_>>>()?;
        Ok(PyList::new(py, items)?.into_any())
    }

    /// A list of (instant, int) tuples, None when empty.
    pub fn pairs<'py, N: Copy + for<'a> IntoPyObject<'py>>(
        &self,
        py: Python<'py>,
        v: &[(I, N)],
    ) -> PyResult<Bound<'py, PyAny>> {
        if v.is_empty() {
            return Ok(py.None().into_bound(py));
        }
        let items = v
            .iter()
            .map(|&(x, n)| PyTuple::new(py, [self.t(py, x)?, n.into_bound_py_any(py)?]))
            .collect::<PyResult<Vec<_>>>()?;
        Ok(PyList::new(py, items)?.into_any())
    }

    pub fn pair<'py>(&self, py: Python<'py>, v: Option<(I, i64)>) -> PyResult<Bound<'py, PyAny>> {
        match v {
            Some((x, n)) => {
                Ok(PyTuple::new(py, [self.t(py, x)?, n.into_bound_py_any(py)?])?.into_any())
            }
            None => Ok(py.None().into_bound(py)),
        }
    }

    pub fn day_dict<'py>(&self, py: Python<'py>, m: &Days) -> PyResult<Bound<'py, PyAny>> {
        if m.is_empty() {
            return Ok(py.None().into_bound(py));
        }
        let d = PyDict::new(py);
        for (k, v) in &m.0 {
            d.set_item(*k, self.t(py, v.get())?)?;
        }
        Ok(d.into_any())
    }

    pub fn str_dict<'py>(
        &self,
        py: Python<'py>,
        m: &SmallMap<Inst>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (k, v) in m {
            d.set_item(k.as_str(), self.t(py, v.get())?)?;
        }
        Ok(d)
    }

    pub fn str_dict_or_none<'py>(
        &self,
        py: Python<'py>,
        m: &SmallMap<Inst>,
    ) -> PyResult<Bound<'py, PyAny>> {
        if m.is_empty() {
            return Ok(py.None().into_bound(py));
        }
        Ok(self.str_dict(py, m)?.into_any())
    }

    pub fn user_to_py<'py>(
        &self,
        py: Python<'py>,
        u: &User,
        with_ids: bool,
        srcs: &[(Box<str>, i64)],
    ) -> PyResult<Bound<'py, PyAny>> {
        let none = || py.None().into_bound(py);
        let r = u.rare();
        let answers = if r.answers.is_empty() {
            none()
        } else {
            let items = r
                .answers
                .iter()
                .map(|(ts, sv, score, tp)| {
                    PyTuple::new(
                        py,
                        [
                            self.t(py, *ts)?,
                            sv.into_bound_py_any(py)?,
                            score.into_bound_py_any(py)?,
                            tp.as_ref().map(|k| k.as_str()).into_bound_py_any(py)?,
                        ],
                    )
                })
                .collect::<PyResult<Vec<_>>>()?;
            PyList::new(py, items)?.into_any()
        };
        let features = if r.features.is_empty() {
            none()
        } else {
            let d = PyDict::new(py);
            for (k, (f0, f1)) in &r.features {
                d.set_item(
                    k.as_str(),
                    PyList::new(py, [self.ot(py, *f0)?, self.tlist(py, f1)?])?,
                )?;
            }
            d.into_any()
        };
        let ids = if with_ids {
            self.str_dict(py, &u.ids)?
        } else {
            PyDict::new(py)
        };
        let offs = if u.offs.is_empty() {
            none()
        } else {
            let d = PyDict::new(py);
            for &(id, off) in &u.offs {
                let (topic, part) = &srcs[id as usize];
                d.set_item((&**topic, *part), off)?;
            }
            d.into_any()
        };
        let ms = if u.ms.is_empty() && !u.ms_some {
            none()
        } else {
            let d = PyDict::new(py);
            for (k, m) in &u.ms {
                match m {
                    Ms::At(x) => d.set_item(k.as_str(), self.t(py, x.get())?)?,
                    Ms::List(v) => d.set_item(k.as_str(), self.tlist(py, v)?)?,
                }
            }
            d.into_any()
        };
        let sessions = if r.sessions.is_empty() {
            none()
        } else {
            let d = PyDict::new(py);
            for (k, s) in &r.sessions {
                let items = s
                    .iter()
                    .map(|&x| self.ot(py, (x != NONE).then_some(x)))
                    .collect::<PyResult<Vec<_>>>()?;
                d.set_item(k.as_str(), PyList::new(py, items)?)?;
            }
            d.into_any()
        };
        let tickets = if r.tickets.is_empty() {
            none()
        } else {
            let d = PyDict::new(py);
            for (k, s) in &r.tickets {
                d.set_item(
                    k.as_str(),
                    PyList::new(py, [self.ot(py, s[0])?, self.ot(py, s[1])?])?,
                )?;
            }
            d.into_any()
        };
        // streams.state.UserState.__slots__ order (checked by streams/native.py)
        let values = PyTuple::new(
            py,
            [
                answers,
                self.day_dict(py, &u.days)?,
                self.pairs(py, &r.facts)?,
                features,
                ids.into_any(),
                self.ot(py, u.last.get())?,
                self.tlist(py, &u.lastp)?,
                ms,
                offs, // live pipeline only
                self.str_dict_or_none(py, &r.orders)?,
                self.str_dict_or_none(py, &r.resp)?,
                self.str_dict_or_none(py, &r.returns)?,
                sessions,
                self.ot(py, u.signup.get())?,
                tickets,
            ],
        )?;
        self.restore_user.bind(py).call1(values)
    }

    pub fn account_to_py<'py>(
        &self,
        py: Python<'py>,
        a: &Account,
        srcs: &[(Box<str>, i64, i64)],
    ) -> PyResult<Bound<'py, PyAny>> {
        let offs = if a.offs.is_empty() {
            py.None().into_bound(py)
        } else {
            let d = PyDict::new(py);
            for &(id, off) in &a.offs {
                let (topic, part, via) = &srcs[id as usize];
                d.set_item((&**topic, *part, *via), off)?;
            }
            d.into_any()
        };
        // streams.state.AccountState.__slots__ order
        let values = PyTuple::new(
            py,
            [
                self.pair(py, a.csat.get())?,
                self.pairs(py, &a.pending.csatp)?,
                self.day_dict(py, &a.days)?,
                self.t(py, a.first.get())?,
                self.ot(py, a.last.get())?,
                self.tlist(py, &a.pending.lastp)?,
                self.pair(py, a.nps.get())?,
                self.pairs(py, &a.pending.npsp)?,
                offs, // live pipeline only
                self.pairs(py, &a.orders)?,
                self.pair(py, a.sub.get())?,
                self.pairs(py, &a.pending.subp)?,
            ],
        )?;
        self.restore_account.bind(py).call1(values)
    }

    // ---- from Python ---------------------------------------------------------------------

    /// A Python instant (int ns, or an exact Fraction of them) in attoseconds; NotRepresentable
    /// when it is finer than attoseconds or out of range.
    pub fn inst(&self, o: &Bound<'_, PyAny>) -> PyResult<I> {
        if let Ok(v) = o.cast::<PyInt>() {
            let n: I = v
                .extract()
                .map_err(|_| not_repr("an instant out of range"))?;
            return n
                .checked_mul(UNIT)
                .ok_or_else(|| not_repr("an instant out of range"));
        }
        let num: I = o
            .getattr("numerator")?
            .extract()
            .map_err(|_| not_repr("an instant out of range"))?;
        let den: I = o
            .getattr("denominator")?
            .extract()
            .map_err(|_| not_repr("an instant out of range"))?;
        let a = num
            .checked_mul(UNIT)
            .ok_or_else(|| not_repr("an instant out of range"))?;
        if den <= 0 || a % den != 0 {
            return Err(not_repr("an instant finer than attoseconds"));
        }
        Ok(a / den)
    }

    pub fn oinst(&self, o: &Bound<'_, PyAny>) -> PyResult<Option<I>> {
        if o.is_none() {
            Ok(None)
        } else {
            self.inst(o).map(Some)
        }
    }

    fn inst_list(&self, o: &Bound<'_, PyAny>) -> PyResult<Vec<I>> {
        if o.is_none() {
            return Ok(Vec::new());
        }
        o.try_iter()?.map(|x| self.inst(&x?)).collect()
    }

    fn str_map(&self, o: &Bound<'_, PyAny>) -> PyResult<SmallMap<Inst>> {
        let mut m = SmallMap::new();
        if !o.is_none() {
            for (k, v) in o.cast::<PyDict>()?.iter() {
                m.insert(Key::from(k.extract::<&str>()?), Inst::new(self.inst(&v)?));
            }
        }
        Ok(m)
    }

    fn days(&self, o: &Bound<'_, PyAny>) -> PyResult<Days> {
        let mut d = Days::default();
        if !o.is_none() {
            for (k, v) in o.cast::<PyDict>()?.iter() {
                d.0.push((k.extract()?, Inst::new(self.inst(&v)?)));
            }
        }
        Ok(d)
    }

    fn pair_list<N: for<'a, 'py> FromPyObject<'a, 'py>>(
        &self,
        o: &Bound<'_, PyAny>,
    ) -> PyResult<Vec<(I, N)>> {
        if o.is_none() {
            return Ok(Vec::new());
        }
        o.try_iter()?
            .map(|x| {
                let x = x?;
                Ok((
                    self.inst(&x.get_item(0)?)?,
                    x.get_item(1)?.extract::<N>().map_err(Into::into)?,
                ))
            })
            .collect()
    }

    fn opair(&self, o: &Bound<'_, PyAny>) -> PyResult<Option<(I, i64)>> {
        if o.is_none() {
            return Ok(None);
        }
        Ok(Some((
            self.inst(&o.get_item(0)?)?,
            o.get_item(1)?.extract()?,
        )))
    }

    /// A streams.state.UserState; `src` interns a (topic, partition) source.
    pub fn user_from_py(
        &self,
        o: &Bound<'_, PyAny>,
        src: &mut dyn FnMut(&str, i64) -> u32,
    ) -> PyResult<User> {
        let mut u = User::default();
        let g = |name: &str| o.getattr(name);
        let answers = g("answers")?;
        if !answers.is_none() {
            for x in answers.try_iter()? {
                let x = x?;
                let tp = x.get_item(3)?;
                u.rare_mut().answers.push((
                    self.inst(&x.get_item(0)?)?,
                    x.get_item(1)?.extract()?,
                    x.get_item(2)?.extract()?,
                    if tp.is_none() {
                        None
                    } else {
                        Some(Key::from(tp.extract::<&str>()?))
                    },
                ));
            }
        }
        u.days = self.days(&g("days")?)?;
        u.rare_mut().facts = self.pair_list::<u8>(&g("facts")?)?;
        let features = g("features")?;
        if !features.is_none() {
            for (k, v) in features.cast::<PyDict>()?.iter() {
                let f0 = self.oinst(&v.get_item(0)?)?;
                let f1 = self.inst_list(&v.get_item(1)?)?;
                u.rare_mut()
                    .features
                    .insert(Key::from(k.extract::<&str>()?), (f0, f1));
            }
        }
        u.ids = self.str_map(&g("ids")?)?;
        u.last = When::of(self.oinst(&g("last")?)?);
        u.lastp = self.inst_list(&g("lastp")?)?.into();
        let ms = g("ms")?;
        if !ms.is_none() {
            u.ms_some = true;
            for (k, v) in ms.cast::<PyDict>()?.iter() {
                let m = if v.cast::<PyList>().is_ok() {
                    Ms::List(self.inst_list(&v)?)
                } else {
                    Ms::At(Inst::new(self.inst(&v)?))
                };
                u.ms.insert(crate::names::intern_or_err(k.extract::<&str>()?)?, m);
            }
        }
        let offs = g("offs")?;
        if !offs.is_none() {
            for (k, v) in offs.cast::<PyDict>()?.iter() {
                let topic: String = k.get_item(0)?.extract()?;
                let part: i64 = k.get_item(1)?.extract()?;
                u.offs.push((src(&topic, part), v.extract()?));
            }
        }
        u.rare_mut().orders = self.str_map(&g("orders")?)?;
        u.rare_mut().resp = self.str_map(&g("resp")?)?;
        u.rare_mut().returns = self.str_map(&g("returns")?)?;
        let sessions = g("sessions")?;
        if !sessions.is_none() {
            for (k, v) in sessions.cast::<PyDict>()?.iter() {
                let mut s = [NONE; 5];
                for (i, e) in s.iter_mut().enumerate() {
                    *e = self.oinst(&v.get_item(i)?)?.unwrap_or(NONE);
                }
                u.rare_mut()
                    .sessions
                    .insert(Key::from(k.extract::<&str>()?), s);
            }
        }
        u.signup = When::of(self.oinst(&g("signup")?)?);
        let tickets = g("tickets")?;
        if !tickets.is_none() {
            for (k, v) in tickets.cast::<PyDict>()?.iter() {
                let tk = [self.oinst(&v.get_item(0)?)?, self.oinst(&v.get_item(1)?)?];
                u.rare_mut()
                    .tickets
                    .insert(Key::from(k.extract::<&str>()?), tk);
            }
        }
        u.tidy();
        Ok(u)
    }

    /// A streams.state.AccountState; `src` interns a (topic, partition, user partition) source.
    pub fn account_from_py(
        &self,
        o: &Bound<'_, PyAny>,
        src: &mut dyn FnMut(&str, i64, i64) -> u32,
    ) -> PyResult<Account> {
        let g = |name: &str| o.getattr(name);
        let mut a = Account::new(self.inst(&g("first")?)?);
        a.csat = Latest::of(self.opair(&g("csat")?)?);
        a.pending.csatp = self.pair_list::<i64>(&g("csatp")?)?.into();
        a.days = self.days(&g("days")?)?;
        a.last = When::of(self.oinst(&g("last")?)?);
        a.pending.lastp = self.inst_list(&g("lastp")?)?.into();
        a.nps = Latest::of(self.opair(&g("nps")?)?);
        a.pending.npsp = self.pair_list::<i64>(&g("npsp")?)?.into();
        let offs = g("offs")?;
        if !offs.is_none() {
            for (k, v) in offs.cast::<PyDict>()?.iter() {
                let topic: String = k.get_item(0)?.extract()?;
                let id = src(&topic, k.get_item(1)?.extract()?, k.get_item(2)?.extract()?);
                a.offs.push((id, v.extract()?));
            }
        }
        a.orders = self.pair_list::<f64>(&g("orders")?)?;
        a.sub = Latest::of(self.opair(&g("sub")?)?);
        a.pending.subp = self.pair_list::<i64>(&g("subp")?)?.into();
        Ok(a)
    }
}

pyo3::create_exception!(
    engagement_native,
    NotRepresentable,
    pyo3::exceptions::PyValueError,
    "A value the compiled core cannot hold exactly (an instant finer than attoseconds)."
);

pub fn not_repr(why: &str) -> PyErr {
    NotRepresentable::new_err(why.to_string())
}
