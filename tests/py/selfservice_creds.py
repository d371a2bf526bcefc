"""nats-py cross-check: log in with user/password only (no file), fetch the own creds from
authd.self.creds, then connect with those creds directly (no callout) and ask who we are.

Usage: selfservice_creds.py URL USER PASSWORD DIR
Prints one JSON line: {"callout": <whoami over the password login>, "creds": <whoami over creds>}.
"""

import asyncio
import json
import os
import sys

import nats


async def whoami(nc):
    reply = await nc.request("authd.self.whoami", b"{}", timeout=10)
    return json.loads(reply.data)


async def main(url, user, password, workdir):
    nc = await nats.connect(url, user=user, password=password, allow_reconnect=False)
    first = await whoami(nc)
    reply = await nc.request("authd.self.creds", b"{}", timeout=10)
    creds = json.loads(reply.data)["creds"]
    await nc.close()

    path = os.path.join(workdir, "self.creds")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(creds)

    nc = await nats.connect(url, user_credentials=path, allow_reconnect=False)
    second = await whoami(nc)
    await nc.close()
    print(json.dumps({"callout": first, "creds": second}))


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
