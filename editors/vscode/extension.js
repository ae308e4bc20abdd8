// Starts `resdsl lsp` (the command in the resdsl.server.command setting) for .res files.
// Install: `npm install` here, then copy or symlink this folder into ~/.vscode/extensions/resdsl.
const vscode = require("vscode");
const { LanguageClient } = require("vscode-languageclient/node");

let client;

function activate(context) {
  const [command, ...args] = vscode.workspace.getConfiguration("resdsl").get("server.command");
  client = new LanguageClient(
    "resdsl",
    "resdsl language server",
    { command, args },
    { documentSelector: [{ scheme: "file", language: "resdsl" }] }
  );
  context.subscriptions.push(client);
  return client.start();
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };
