import { isoSeconds } from '../../core/format.js';
import type { TerminalLine } from '../../services/zip-manifests.js';
import type { TerminalOutput } from '../schemas/zip.js';

/** A terminal line as `/ota-update` sends it (`terminal_output`): snake_case, whole-second UTC. */
export function presentTerminalLine(l: TerminalLine): TerminalOutput {
  return { update_id: l.updateId, stream: l.stream, line: l.line, timestamp: isoSeconds(l.at) };
}
