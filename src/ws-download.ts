/**
 * Defines `<ws-download>`. Import this module once to use the tag.
 * @module
 */
import { WsDownload } from './element/ws-download-element.js';

if (!customElements.get('ws-download')) customElements.define('ws-download', WsDownload);

export { WsDownload };
