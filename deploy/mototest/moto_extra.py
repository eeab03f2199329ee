"""Run the shared moto launcher (shared/moto/moto_server.py) with one more fix,
and exit when standard input closes so a test process that dies never leaves
a server behind.

usage: python3 moto_extra.py LAUNCHER [-p PORT] [-H HOST]

moto 5.2.1 bug fixed here, on top of the launcher's four:
5. A stack created or updated by executing a change set keeps the outputs of
   its previous template (none, for a new stack) and never registers its
   exports, and a CREATE change set cannot resolve Fn::ImportValue: the CDK's
   cross-stack references (stack B using an output of stack A) fail with
   "No export named ... found". CreateStack/UpdateStack do this right; the fix
   does for change sets what they do.
"""
import os
import runpy
import sys
import threading

from moto.cloudformation import models


def _watch_stdin():
    try:
        sys.stdin.buffer.read()
    finally:
        os._exit(0)


_create_change_set = models.CloudFormationBackend.create_change_set
_execute_change_set = models.CloudFormationBackend.execute_change_set


def create_change_set(self, *args, **kwargs):
    cs_id, stack_id = _create_change_set(self, *args, **kwargs)
    stack = self.stacks[stack_id]
    stack.cross_stack_resources = self.exports
    stack.resource_map.cross_stack_resources = self.exports
    return cs_id, stack_id


def execute_change_set(self, change_set_name, stack_name=None):
    _execute_change_set(self, change_set_name, stack_name)
    cs = self.change_sets.get(change_set_name)
    if cs is None:
        for c in self.change_sets.values():
            if c.change_set_name == change_set_name:
                cs = c
    stack = self.stacks[cs.stack_id]
    stack._parse_template()
    stack.output_map = stack._create_output_map()
    for name in [n for n, e in self.exports.items() if e.exporting_stack_id == stack.stack_id]:
        del self.exports[name]
    for export in stack.exports:
        self.exports[export.name] = export


models.CloudFormationBackend.create_change_set = create_change_set
models.CloudFormationBackend.execute_change_set = execute_change_set

if __name__ == "__main__":
    launcher = sys.argv[1]
    threading.Thread(target=_watch_stdin, daemon=True).start()
    sys.argv = [launcher] + sys.argv[2:]
    runpy.run_path(launcher, run_name="__main__")
