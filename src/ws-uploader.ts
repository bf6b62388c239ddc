/**
 * Defines `<ws-uploader>`. Import this module (or the bundle) once to use the tag.
 * @module
 */
import { WsUploader } from './element/ws-uploader-element.js';

if (!customElements.get('ws-uploader')) customElements.define('ws-uploader', WsUploader);

export { WsUploader };
