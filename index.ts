// Philly Mesh's Matrix chat service, as one Pulumi program: read the stack config (checked, every
// problem named), look up what the clouds already hold, build the service, export what the operator
// needs next (components/chatService.ts). The engine runs the exported function.
import { chatProgram } from "./components/chatService";

export = chatProgram;
