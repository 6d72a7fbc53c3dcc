// Drives npm socket.io-client (seed 002's `io(url, {auth: {token}})`) for tests/realtime/test_socketio.py.
// stdin: one JSON command a line — {"op": "connect", "name", "url", "auth"} | {"op": "emit", "name",
// "event", "args", "ack": true} | {"op": "close", "name"}. stdout: one JSON line per thing that
// happened — {"name", "event", "args"} for every event a client hears (connect/disconnect included;
// connect_error as [message, data, socket.active]),
// {"name", "ack", "event", "args"} for acknowledgements.
const { io } = require("socket.io-client");
const readline = require("readline");

const clients = {};
const out = (line) => process.stdout.write(JSON.stringify(line) + "\n");

function connect({ name, url, auth, transports }) {
  const socket = io(url, { auth, transports: transports || ["websocket"], reconnection: false, forceNew: true });
  clients[name] = socket;
  socket.on("connect", () => out({ name, event: "connect", args: [socket.id] }));
  socket.on("connect_error", (err) => out({ name, event: "connect_error",
    args: [String(err && err.message), (err && err.data) || null, socket.active] }));
  socket.on("disconnect", (reason) => out({ name, event: "disconnect", args: [reason] }));
  socket.onAny((event, ...args) => out({ name, event, args }));
}

function emit({ name, event, args, ack }) {
  const socket = clients[name];
  if (ack) {
    socket.timeout(15000).emit(event, ...(args || []), (err, answer) =>
      out({ name, ack: true, event, args: err ? [{ timeout: true }] : [answer] }));
  } else {
    socket.emit(event, ...(args || []));
  }
}

readline.createInterface({ input: process.stdin }).on("line", (line) => {
  if (!line.trim()) return;
  const command = JSON.parse(line);
  if (command.op === "connect") connect(command);
  else if (command.op === "emit") emit(command);
  else if (command.op === "close") clients[command.name].close();
}).on("close", () => process.exit(0));
