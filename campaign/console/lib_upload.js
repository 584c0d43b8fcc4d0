// Upload with progress: fetch cannot report upload progress, XMLHttpRequest can.
import { token, ApiError } from './lib.js';

/** POSTs `body` to `path` with the bearer token; `onProgress(fraction)` while sending. */
export function upload(path, body, type, onProgress) {
  return new Promise((resolve, reject) => {
    const x = new XMLHttpRequest();
    x.open('POST', path);
    x.setRequestHeader('Authorization', `Bearer ${token()}`);
    x.setRequestHeader('Content-Type', type);
    x.upload.onprogress = (e) => { if (e.lengthComputable) onProgress(e.loaded / e.total); };
    x.onload = () => {
      let data = null;
      try { data = JSON.parse(x.responseText); } catch { data = { error: x.responseText }; }
      if (x.status >= 200 && x.status < 300) { onProgress(1); resolve(data); } else reject(new ApiError(x.status, data));
    };
    x.onerror = () => reject(new Error('network error'));
    x.send(body);
  });
}
