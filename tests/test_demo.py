import subprocess
import sys


def test_demo_prints_ml100k_statistics_and_histories(ml100k):
    result = subprocess.run([sys.executable, "-m", "llmrec", "demo"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "943 users, 1,682 items, 100,000 interactions" in out
    assert "user 196" not in out and "user 1:" in out
    titles = set(ml100k.items["title"])
    shown = [line.split("*  ", 1)[1] for line in out.splitlines() if "*  " in line]
    assert len(shown) >= 8 and all(title in titles for title in shown)
