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
    profile = out.split("profile of user 1 after their", 1)[1].splitlines()
    assert profile[0].startswith(" 272 ratings") and profile[1].strip().startswith("Likes: ")
    llm_part = out.split("LLM top-5 for user", 1)[1].splitlines()[1:6]
    ranked = [line.strip().split(". ", 1)[1].rsplit("  (", 1)[0] for line in llm_part]
    assert len(ranked) == 5 and len(set(ranked)) == 5 and all(title in titles for title in ranked)
