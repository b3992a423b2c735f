"""A hotline: greeting, a menu, and the caller bridged to the desk they chose.

Run:  python examples/hotline.py   (extensions 1001/1002 of demo.toml register; dial 4000)
"""

import asyncio
from pathlib import Path

from pbx import Call, DialFailed, Pbx

pbx = Pbx(Path(__file__).with_name("demo.toml"))
DESKS = {"1": "1001", "2": "1002"}          # menu digit -> extension


@pbx.route("4000")
async def hotline(call: Call) -> None:
    await call.answer()
    await call.say("Welcome to the demo hotline.")
    choice = ""
    for _ in range(3):                       # the menu, at most three times
        await call.say("For sales, press 1. For support, press 2.")
        choice = await call.collect_digits(max_digits=1, timeout=5)
        if choice in DESKS:
            break
    call.decide("menu", choice or "timeout")
    try:
        desk = await call.dial(DESKS.get(choice, "1002"), timeout=20)
    except DialFailed:
        await call.say("Sorry, nobody can take your call now. Goodbye.")
        return
    await call.bridge(desk)


if __name__ == "__main__":
    asyncio.run(pbx.serve_forever())
