#!/usr/bin/env python
import sys
from datetime import datetime

from latest_ai_development.crew import LatestAiDevelopment


def run():
    inputs = {"topic": "AI LLMs", "current_year": str(datetime.now().year)}
    LatestAiDevelopment().crew().kickoff(inputs=inputs)


if __name__ == "__main__":
    run()
    sys.exit(0)
