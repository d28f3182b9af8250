//! State to Python objects (streams.state.UserState / AccountState, instants as int
//! nanoseconds or exact Fractions).

use crate::state::{Account, Days, Key, Map, Ms, User, NONE};
use crate::time::{I, INIT_FOLD, UNIT};
use pyo3::conversion::IntoPyObjectExt;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};

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
            (x / UNIT).into_bound_py_any(py)
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
            d.set_item(*k, self.t(py, *v)?)?;
        }
        Ok(d.into_any())
    }

    pub fn str_dict<'py>(&self, py: Python<'py>, m: &Map<Key, I>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (k, v) in m {
            d.set_item(k.as_str(), self.t(py, *v)?)?;
        }
        Ok(d)
    }

    pub fn str_dict_or_none<'py>(
        &self,
        py: Python<'py>,
        m: &Map<Key, I>,
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
    ) -> PyResult<Bound<'py, PyAny>> {
        let none = || py.None().into_bound(py);
        let answers = if u.answers.is_empty() {
            none()
        } else {
            let items = u
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
        let features = if u.features.is_empty() {
            none()
        } else {
            let d = PyDict::new(py);
            for (k, (f0, f1)) in &u.features {
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
        let ms = if u.ms.is_empty() {
            none()
        } else {
            let d = PyDict::new(py);
            for (k, m) in &u.ms {
                match m {
                    Ms::At(x) => d.set_item(k.as_str(), self.t(py, *x)?)?,
                    Ms::List(v) => d.set_item(k.as_str(), self.tlist(py, v)?)?,
                }
            }
            d.into_any()
        };
        let sessions = if u.sessions.is_empty() {
            none()
        } else {
            let d = PyDict::new(py);
            for (k, s) in &u.sessions {
                let items = s
                    .iter()
                    .map(|&x| self.ot(py, (x != NONE).then_some(x)))
                    .collect::<PyResult<Vec<_>>>()?;
                d.set_item(k.as_str(), PyList::new(py, items)?)?;
            }
            d.into_any()
        };
        let tickets = if u.tickets.is_empty() {
            none()
        } else {
            let d = PyDict::new(py);
            for (k, s) in &u.tickets {
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
                self.pairs(py, &u.facts)?,
                features,
                ids.into_any(),
                self.ot(py, u.last)?,
                self.tlist(py, &u.lastp)?,
                ms,
                none(), // offs: live pipeline only
                self.str_dict_or_none(py, &u.orders)?,
                self.str_dict_or_none(py, &u.resp)?,
                self.str_dict_or_none(py, &u.returns)?,
                sessions,
                self.ot(py, u.signup)?,
                tickets,
            ],
        )?;
        self.restore_user.bind(py).call1(values)
    }

    pub fn account_to_py<'py>(&self, py: Python<'py>, a: &Account) -> PyResult<Bound<'py, PyAny>> {
        // streams.state.AccountState.__slots__ order
        let values = PyTuple::new(
            py,
            [
                self.pair(py, a.csat)?,
                self.pairs(py, &a.csatp)?,
                self.day_dict(py, &a.days)?,
                self.t(py, a.first)?,
                self.ot(py, a.last)?,
                self.tlist(py, &a.lastp)?,
                self.pair(py, a.nps)?,
                self.pairs(py, &a.npsp)?,
                py.None().into_bound(py), // offs: live pipeline only
                self.pairs(py, &a.orders)?,
                self.pair(py, a.sub)?,
                self.pairs(py, &a.subp)?,
            ],
        )?;
        self.restore_account.bind(py).call1(values)
    }
}
