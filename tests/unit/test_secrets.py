"""No secret in the repository: a scan of every tracked file (git ls-files) for private keys,
cloud credentials, passwords written into URLs or assignments, and the passwords and keys the
secure local stack generated in this checkout's run directories (which must stay untracked)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

PATTERNS = {
    "private key": re.compile(
        rb"-----BEGIN (?:RSA |EC |DSA |OPENSSH |ENCRYPTED )?PRIVATE KEY-----"
    ),
    "AWS access key": re.compile(rb"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    "GitHub token": re.compile(rb"\bgh[pousr]_[A-Za-z0-9]{36,}\b"),
    "Slack token": re.compile(rb"\bxox[abprs]-[A-Za-z0-9-]{10,}"),
    "password in a URL": re.compile(
        rb"\b(?:rediss?|kafka|https?|amqp)://[^\s/:@\"'`]*:[^\s@/\"'`$*{<]{3,}@"
    ),
    "password assignment": re.compile(
        rb"(?i)\b[a-z_]*(?:password|passwd|secret|api_key|token)\b[\"']?\s*[:=]\s*[\"']"
        rb"(?!\$|\{|<|not-the-password)[^\"'\s]{12,}[\"']"
    ),
    "JAAS password": re.compile(rb'password="(?!\$|not-the-password")[^"]{6,}"'),
}
# A file may hold a pattern on purpose only if it is listed here, with the reason.
ALLOWED: dict[str, set[str]] = {
    "tests/unit/test_secrets.py": set(PATTERNS),  # the patterns themselves
    "tests/unit/test_health.py": {"password in a URL"},  # bait: at-risk must not print it
    # a made-up password the test follows through reprs and settings
    "tests/unit/test_security_settings.py": {"password assignment"},
}


def _tracked() -> list[Path]:
    out = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout
    return [REPO / p.decode() for p in out.split(b"\0") if p]


def test_no_secret_in_a_tracked_file() -> None:
    files = _tracked()
    assert len(files) > 50
    found = []
    for path in files:
        rel = str(path.relative_to(REPO))
        try:
            data = path.read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            continue  # deleted in the working tree, or a submodule
        for name, pat in PATTERNS.items():
            if name in ALLOWED.get(rel, set()):
                continue
            m = pat.search(data)
            if m:
                line = data.count(b"\n", 0, m.start()) + 1
                found.append(f"{rel}:{line}: {name}")
    assert not found, "\n".join(found)


def test_patterns_catch_what_they_are_for() -> None:
    """The scan can fail: each pattern finds a made-up secret of its kind."""
    samples = {
        "private key": b"-----BEGIN EC PRIVATE KEY-----\nMHc...",
        "AWS access key": b"aws_access_key_id = AKIAIOSFODNN7EXAMPLE",
        "GitHub token": b"token: ghp_" + b"a1" * 18,
        "Slack token": b"xoxb-1234567890-abcdef",
        "password in a URL": b"REDIS_URL=rediss://engagement:hunter2hunter2@redis:6380/0",
        "password assignment": b'KAFKA_SASL_PASSWORD = "c0rrect-h0rse-battery"',
        "JAAS password": b'ScramLoginModule required username="admin" password="s3cr3t!!";',
    }
    for name, sample in samples.items():
        assert PATTERNS[name].search(sample), name
    # and what is not a secret: references, placeholders, redacted values, this suite's bait
    for ok in (
        b"KAFKA_SASL_PASSWORD_FILE=$d/kafka.password",
        b'password="$admin_pw";',
        b"rediss://127.0.0.1:46379/0",
        b"redis://user:***@host:6379/0",
        b'env["KAFKA_SASL_PASSWORD"] = "not-the-password"',
        b"password: ${REDIS_PASSWORD}",
    ):
        assert not any(p.search(ok) for p in PATTERNS.values()), ok


def test_generated_secrets_stay_out_of_the_repository() -> None:
    """The secure stack's passwords, keys and certificates live in ignored run directories;
    none is tracked, and no tracked file holds a password this checkout generated."""
    tracked = _tracked()
    names = {str(p.relative_to(REPO)) for p in tracked}
    assert not [
        n for n in names if n.startswith(".run/") or n.endswith((".pem", ".key", ".password"))
    ]
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", ".run/secure-stack/secure/kafka.password"], cwd=REPO
    )
    assert ignored.returncode == 0, ".run/ must be ignored by git"
    generated = [
        p.read_bytes().strip()
        for p in (REPO / ".run").glob("**/secure/*.password")
        if p.stat().st_size >= 16
    ]
    for path in tracked:
        try:
            data = path.read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            continue
        for secret in generated:
            assert secret not in data, f"a generated password is in {path}"
